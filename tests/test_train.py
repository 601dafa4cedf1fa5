"""The training spine end to end: metrics, TensorBoard, checkpoints, resume."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config
from flax import nnx

from attention_jax import decoding, train, writers
from attention_jax import step as step_lib
from attention_jax import workdir as workdir_lib
from attention_jax.errors import NonFiniteError

METRIC_NAMES = {
  "loss",
  "token_accuracy",
  "grad_norm",
  "learning_rate",
  "steps_per_sec",
  "tokens_per_sec",
}


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """One uninterrupted 40-step run reused by several tests."""
  workdir = str(tmp_path_factory.mktemp("full"))
  config = tiny_config(**{"train.learning_rate": 1e-2})
  final = train.train_and_evaluate(config, workdir)
  return config, workdir, final


def test_metrics_jsonl(full_run):
  _, workdir, final = full_run
  rows = writers.read_metrics(workdir)
  train_rows = [r for r in rows if r["split"] == "train"]
  eval_rows = [r for r in rows if r["split"] == "eval"]
  assert [r["step"] for r in train_rows] == [10, 20, 30, 40]
  assert [r["step"] for r in eval_rows] == [20, 40]
  assert METRIC_NAMES <= set(train_rows[0])
  assert {"loss", "token_accuracy", "sequence_accuracy", "perplexity"} <= set(eval_rows[0])
  assert train_rows[-1]["loss"] < 0.8 * train_rows[0]["loss"]  # it learns
  assert final == {k: v for k, v in eval_rows[-1].items() if k not in ("step", "split")}
  assert np.isclose(eval_rows[-1]["perplexity"], np.exp(eval_rows[-1]["loss"]))


def test_tensorboard_reads_back(full_run):
  from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

  _, workdir, _ = full_run
  acc = EventAccumulator(os.path.join(workdir, "tb"))
  acc.Reload()
  tags = set(acc.Tags()["scalars"])
  assert {"train/loss", "eval/sequence_accuracy", "train/grad_norm"} <= tags
  rows = writers.read_metrics(workdir)
  want = [r["loss"] for r in rows if r["split"] == "train"]
  got = [e.value for e in acc.Scalars("train/loss")]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_workdir_layout_and_rebuild(full_run):
  config, workdir, _ = full_run
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f) == config.to_dict()
  run = workdir_lib.load(workdir)

  assert isinstance(run.model, nnx.Module)  # rebuilt from the workdir alone
  loaded_config = run.config
  assert loaded_config.to_dict() == config.to_dict()
  assert int(run.state.step) == config.train.steps
  # The rebuilt model decodes like the trained one reports.
  eval_set = run.task.eval_set("eval")
  step = jax.jit(step_lib.make_eval_step(run.graphdef, run.objective))
  metrics = step_lib.evaluate(
    step, run.objective, run.state.params, eval_set, config.eval.batch_size
  )
  last = [r for r in writers.read_metrics(workdir) if r["split"] == "eval"][-1]
  assert metrics["sequence_accuracy"] == pytest.approx(last["sequence_accuracy"])


def _leaves_equal(a, b):
  la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(la) == len(lb)
  for x, y in zip(la, lb, strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_after_kill_is_bit_exact(full_run, tmp_path):
  config, full_dir, _ = full_run
  workdir = str(tmp_path)
  # "Killed" after step 30: the last checkpoint is step 20, and metrics for
  # steps 21..30 were written and must be dropped on resume.
  train.train_and_evaluate(config, workdir, stop_after_step=30)
  train.train_and_evaluate(config, workdir)
  a = workdir_lib.load(full_dir)
  b = workdir_lib.load(workdir)
  _leaves_equal(a.state.params, b.state.params)
  _leaves_equal(a.state.opt_state, b.state.opt_state)
  _leaves_equal(a.state.rng, b.state.rng)

  def strip(rows):
    return [{k: v for k, v in r.items() if not k.endswith("per_sec")} for r in rows]

  assert strip(writers.read_metrics(workdir)) == strip(writers.read_metrics(full_dir))


def test_finished_run_returns_at_once(full_run):
  config, workdir, final = full_run
  before = os.path.getmtime(os.path.join(workdir, "metrics.jsonl"))
  again = train.train_and_evaluate(config, workdir)
  assert again["sequence_accuracy"] == final["sequence_accuracy"]
  assert os.path.getmtime(os.path.join(workdir, "metrics.jsonl")) == before


def test_train_step_compiles_once():
  config = tiny_config()
  run = workdir_lib.build_run(config)
  step = jax.jit(
    step_lib.make_train_step(run.graphdef, run.tx, run.schedule, config, run.objective)
  )
  it = run.task.train_iterator()
  state = run.state
  for _ in range(3):
    state, m = step(state, next(it))
  assert step._cache_size() == 1
  assert int(state.step) == 3 and np.isfinite(float(m["loss"]))


def test_non_finite_loss_stops_with_step(tmp_path):
  config = tiny_config(
    **{
      "train.learning_rate": 1e30,
      "train.grad_clip_norm": 0.0,
      "train.schedule": "constant",
      "train.warmup_steps": 0,
    }
  )
  with pytest.raises(NonFiniteError, match=r"at step \d+; last good checkpoint"):
    train.train_and_evaluate(config, str(tmp_path))


def test_greedy_decode_equals_python_loop():
  config = tiny_config()
  run = workdir_lib.build_run(config)
  model = nnx.merge(run.graphdef, run.state.params)
  src = jnp.asarray(run.task.eval_set()["src"][:4])
  tokens, _ = decoding.greedy_decode(model, src, 6)
  memory = model.encode(src)
  state = model.init_decode_state(memory)
  tok = jnp.full((4,), 1, jnp.int32)
  done = np.zeros(4, bool)
  for t in range(6):
    logits, state, _ = model.decode_step(memory, state, tok)
    logits = logits.at[:, :2].set(-jnp.inf)  # PAD and BOS are never produced
    tok = jnp.argmax(logits, -1).astype(jnp.int32)
    expect = np.where(done, 0, np.asarray(tok))
    np.testing.assert_array_equal(np.asarray(tokens[:, t]), expect)
    done |= expect == 2


def test_schedule_shapes():
  c = tiny_config(
    **{
      "train.steps": 100,
      "train.warmup_steps": 10,
      "train.learning_rate": 1.0,
      "train.end_lr_fraction": 0.1,
    }
  )
  s = step_lib.make_schedule(c)
  assert float(s(0)) == 0.0 and float(s(10)) == pytest.approx(1.0)
  assert float(s(100)) == pytest.approx(0.1)
  c.train.schedule = "rsqrt"
  s = step_lib.make_schedule(c)
  assert float(s(10)) == pytest.approx(1.0) and float(s(40)) == pytest.approx(0.5)


def test_warmup_longer_than_run_is_cut_to_the_run():
  """`--config.train.steps=50` on a config with 200 warm-up steps: validates,
  and the schedule warms up over the 50 steps (then ends at the cosine floor)."""
  from attention_jax import config as config_lib

  c = tiny_config(
    **{
      "train.steps": 50,
      "train.warmup_steps": 200,
      "train.learning_rate": 1.0,
      "train.end_lr_fraction": 0.1,
    }
  )
  config_lib.validate(c)
  for schedule in ("cosine", "constant"):
    c.train.schedule = schedule
    s = step_lib.make_schedule(c)
    assert float(s(0)) == 0.0 and float(s(25)) == pytest.approx(0.5)
  c.train.schedule = "rsqrt"
  assert float(step_lib.make_schedule(c)(50)) == pytest.approx(1.0)
