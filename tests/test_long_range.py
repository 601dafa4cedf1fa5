"""Long-range tasks, their model and objectives, and the gradient instruments."""

import importlib.util
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT

from attention_jax import config as config_lib
from attention_jax import gradients, models, objectives, train, writers
from attention_jax import step as step_lib
from attention_jax.data import long_range


def _long_range_module():
  spec = importlib.util.spec_from_file_location(
    "long_range_config", os.path.join(ROOT, "configs", "long_range.py")
  )
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


LR = _long_range_module()


def lr_config(arg="tiny=1", **overrides):
  c = LR.get_config(arg)
  for key, value in overrides.items():
    section, leaf = key.split(".")
    c[section][leaf] = value
  return c


# --------------------------------------------------------------------------
# Generators


def test_adding_problem_shapes_and_baseline():
  rng = np.random.default_rng(0)
  T = 50
  ex = long_range.adding_examples(rng, 20000, T)
  assert ex["inputs"].shape == (20000, T, 2) and ex["inputs"].dtype == np.float32
  values, markers = ex["inputs"][..., 0], ex["inputs"][..., 1]
  assert values.min() >= 0.0 and values.max() <= 1.0
  # Exactly two markers, one in each half; the target is their values' sum.
  np.testing.assert_array_equal(markers[:, : T // 2].sum(1), 1.0)
  np.testing.assert_array_equal(markers[:, T // 2 :].sum(1), 1.0)
  np.testing.assert_allclose(ex["target"], (values * markers).sum(1), rtol=1e-6)
  # Always predicting 1: MSE = Var(u1 + u2) = 1/6.
  assert abs(np.mean((ex["target"] - 1.0) ** 2) - 1 / 6) < 0.005
  np.testing.assert_allclose(ex["baseline"], (ex["target"] - 1.0) ** 2, rtol=1e-6)


def test_copy_memory_layout_and_memoryless_baseline():
  T, K = 7, long_range.COPY_SYMBOLS
  ex = long_range.copy_memory_examples(np.random.default_rng(1), 64, T)
  x, y = ex["inputs"], ex["labels"]
  assert x.shape == y.shape == (64, T + 20)
  symbols = x[:, :K]
  assert symbols.min() >= 5 and symbols.max() <= 12  # 8 symbols
  assert np.all(x[:, K : K + T - 1] == long_range.COPY_BLANK)
  assert np.all(x[:, K + T - 1] == long_range.COPY_DELIMITER)
  assert np.all(x[:, K + T :] == long_range.COPY_BLANK)
  assert np.all(y[:, : T + K] == long_range.COPY_BLANK)
  np.testing.assert_array_equal(y[:, -K:], symbols)
  assert ex["scored"].sum() == 64 * K and ex["scored"][:, -K:].all()
  # The memoryless predictor: blank with certainty, then uniform over the 8
  # symbols. Its mean cross-entropy per step, computed directly:
  V = len(long_range.copy_vocabulary())
  logp = np.full((T + 20, V), -np.inf)
  logp[: T + K, long_range.COPY_BLANK] = 0.0
  logp[T + K :, 5:13] = -math.log(8)
  ce = -np.take_along_axis(logp[None].repeat(64, 0), y[..., None], -1)[..., 0]
  assert ce.mean() == pytest.approx(10 * math.log(8) / (T + 20))
  assert ex["baseline"][0] == pytest.approx(long_range.copy_memory_baseline(T))


def test_temporal_order_layout():
  T = 50
  ex = long_range.temporal_order_examples(np.random.default_rng(2), 4000, T)
  x, y = ex["inputs"], ex["labels"]
  assert x.shape == (4000, T) and y.shape == (4000,)
  relevant = x >= 8  # X = 8, Y = 9
  assert np.all(relevant.sum(1) == 2)
  pos = np.argwhere(relevant)[:, 1].reshape(-1, 2)
  assert pos[:, 0].min() >= T // 10 and pos[:, 0].max() < 2 * T // 10
  assert pos[:, 1].min() >= 5 * T // 10 and pos[:, 1].max() < 6 * T // 10
  rows = np.arange(4000)
  first, second = x[rows, pos[:, 0]] - 8, x[rows, pos[:, 1]] - 8
  np.testing.assert_array_equal(y, 4 + 2 * first + second)
  counts = np.bincount(y - 4, minlength=4) / 4000
  np.testing.assert_allclose(counts, 0.25, atol=0.03)


def test_batches_are_pure_functions_of_seed_split_index():
  task = train.data_lib.build_task(lr_config("task=copy,tiny=1"))
  a, b = task.train_batch(3), task.train_batch(3)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(task.train_batch(4)["inputs"], a["inputs"])
  assert not np.array_equal(task.eval_set("eval")["inputs"], task.eval_set("test")["inputs"])
  it = task.train_iterator()
  next(it), next(it)
  it2 = task.train_iterator()
  it2.set_state(it.get_state())
  np.testing.assert_array_equal(next(it)["inputs"], next(it2)["inputs"])


def test_evaluation_padding_rows_count_nothing():
  """A predict-1 'model' scores exactly the baseline, with a padded last batch."""
  task = train.data_lib.build_task(lr_config("task=adding,tiny=1"))
  data = task.eval_set("eval")
  data = {k: v[:50] for k, v in data.items()}  # 50 = 32 + 18 (padded)
  objective = objectives.get("regression")

  def predict_one(inputs):
    return jnp.ones(inputs.shape[0])

  step = jax.jit(lambda params, batch: objective.eval_batch(predict_one, batch))
  m = step_lib.evaluate(step, objective, None, data, 32)
  expected = float(np.mean((data["target"].astype(np.float64) - 1.0) ** 2))
  assert m["mse"] == pytest.approx(expected, rel=1e-5)
  assert m["loss"] == m["mse"] == pytest.approx(m["baseline_loss"], rel=1e-5)


# --------------------------------------------------------------------------
# Config


def test_config_arg_parsing():
  c = LR.get_config("cell=attention,task=order,length=40")
  assert (c.model.name, c.model.cell, c.model.pooling) == ("sequence_rnn", "elman", "attention")
  assert (c.data.task, c.data.length) == ("temporal_order", 40)
  assert (
    c.model.hidden_size,
    c.train.batch_size,
    c.train.learning_rate,
    c.train.grad_clip_norm,
  ) == (128, 32, 1e-3, 1.0)
  config_lib.validate(c)
  for bad, needle in [
    ("cel=lstm", "unknown argument key 'cel'"),
    ("cell=rnn", "cell='rnn'; allowed: elman, gru, lstm, attention"),
    ("task=adder", "task='adder'; allowed: adding, copy, order"),
    ("length=ten", "length='ten'"),
    ("lstm", "not key=value"),
  ]:
    with pytest.raises(ValueError, match=needle):
      LR.get_config(bad)


def test_config_rejects_mismatched_model_and_task():
  c = lr_config()
  c.model.name = "rnn_encdec"
  with pytest.raises(config_lib.ConfigError, match="cannot run data.task 'adding'"):
    config_lib.validate(c)
  c = lr_config("task=order,tiny=1")
  c.data.length = 5
  with pytest.raises(config_lib.ConfigError, match="'data.length' must be >= 10"):
    config_lib.validate(c)


# --------------------------------------------------------------------------
# The probe against an independent computation


def _unrolled_loss_from_state(model, objective, batch, t):
  """L as a function of an explicit h_t, by a Python loop over the cell."""
  x = model.features(batch["inputs"])
  B, T = x.shape[:2]
  cell = model.cell
  carry = cell.initialize_carry((B,))
  hs = []
  for s in range(t + 1):
    carry = cell.step(carry, cell.input_projection(x[:, s]))
    hs.append(cell.output(carry))

  def loss(h_t):
    c = gradients_carry_with_h(carry, h_t)
    states = hs[:t] + [h_t]
    for s in range(t + 1, T):
      c = cell.step(c, cell.input_projection(x[:, s]))
      states.append(cell.output(c))
    out = model.readout(jnp.stack(states, 1), cell.output(c))
    return objective.per_example_loss(out, batch).sum()

  return loss, hs[t]


def gradients_carry_with_h(carry, h):
  return (carry[0], h) if isinstance(carry, tuple) else h


@pytest.mark.parametrize(
  "arg",
  [
    "cell=elman,task=adding",
    "cell=gru,task=adding",
    "cell=lstm,task=order",
    "cell=attention,task=adding",
    "cell=attention,task=copy",
  ],
)
def test_probe_equals_unrolled_gradient(arg):
  config = lr_config(arg + ",length=10,tiny=1", **{"model.hidden_size": 8})
  task = train.data_lib.build_task(config)
  model = models.build_model(config, len(task.src_vocab), len(task.tgt_vocab))
  objective = objectives.get(task.objective)
  batch = {k: jnp.asarray(v[:3]) for k, v in task.eval_set().items()}
  gh, gx = jax.jit(lambda b: gradients.probe_gradients(model, objective, b))(batch)
  T = batch["inputs"].shape[1]
  for t in (0, T // 2, T - 1):
    loss, h_t = _unrolled_loss_from_state(model, objective, batch, t)
    np.testing.assert_allclose(gh[:, t], jax.grad(loss)(h_t), rtol=1e-4, atol=1e-6)
  # ∂L/∂x_t by differentiating with respect to the input features directly.
  x = model.features(batch["inputs"])

  def loss_of_x(x):
    final, hs = model.states(x)
    out = model.readout(hs, model.cell.output(final))
    return objective.per_example_loss(out, batch).sum()

  np.testing.assert_allclose(gx, jax.grad(loss_of_x)(x), rtol=1e-4, atol=1e-6)


def test_jacobian_sigma_equals_unrolled_jacobian():
  config = lr_config("cell=lstm,length=8,tiny=1", **{"model.hidden_size": 6})
  task = train.data_lib.build_task(config)
  model = models.build_model(config, len(task.src_vocab), len(task.tgt_vocab))
  inputs = jnp.asarray(task.eval_set()["inputs"][:2])
  sig = gradients.jacobian_norms(model, inputs)  # (2, T)
  cell, x = model.cell, model.features(inputs)
  for b in range(2):
    for t in (0, 5):
      carry = cell.initialize_carry((1,))
      for s in range(t + 1):
        carry = cell.step(carry, cell.input_projection(x[b : b + 1, s]))

      def h_final(h_t, carry=carry, t=t, b=b):
        c = (carry[0], h_t)
        for s in range(t + 1, 8):
          c = cell.step(c, cell.input_projection(x[b : b + 1, s]))
        return c[1][0]

      J = jax.jacobian(h_final)(carry[1])[:, 0]  # (H, H)
      assert float(sig[b, t]) == pytest.approx(
        float(np.linalg.svd(np.asarray(J), compute_uv=False)[0]), rel=1e-4
      )
  np.testing.assert_allclose(sig[:, -1], 1.0, rtol=1e-5)  # ∂h_T/∂h_T = I


def test_float64_measures_what_float32_underflows():
  """A contracting Elman (U = 0.05·orthogonal): ‖∂L/∂h_1‖ ~ 0.05^40 ≈ 1e-52."""
  config = lr_config("cell=elman,tiny=1", **{"data.length": 41, "model.hidden_size": 8})
  task = train.data_lib.build_task(config)
  model = models.build_model(config, len(task.src_vocab), len(task.tgt_vocab))
  model.cell.recurrent_kernel[...] = 0.05 * model.cell.recurrent_kernel[...]
  objective = objectives.get(task.objective)
  batch = {k: v[:4] for k, v in task.eval_set().items()}
  g32, _ = gradients.probe_gradients(
    model, objective, {k: jnp.asarray(v) for k, v in batch.items()}
  )
  assert float(jnp.abs(g32[:, 0]).max()) == 0.0  # float32 underflows
  curves = gradients.measure(model, objective, batch, jacobian_examples=2)
  gh = curves["grad_h_norm"]
  assert gh.dtype == np.float64 and np.all(gh > 0) and gh[0] < 1e-45
  rate = gradients.decay_per_step(gh)
  assert 0.005 < rate <= 0.05  # |tanh'| <= 1
  sig = curves["jacobian_sigma_max"]
  assert sig[0] < 1e-45 and np.all(sig[:-1] <= 0.05 + 1e-9) and sig[-1] == pytest.approx(1)


def test_decay_fit_recovers_a_geometric_rate():
  T = 30
  curve = 3.0 * 0.8 ** np.arange(T - 1, -1, -1.0)  # g_t = 3·0.8^(T−t)
  curve[-1] = 100.0  # readout step: ignored
  assert gradients.decay_per_step(curve) == pytest.approx(0.8, rel=1e-9)


# --------------------------------------------------------------------------
# End to end


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("order"))
  config = lr_config(
    "cell=attention,task=order,tiny=1",
    **{"train.steps": 60, "eval.every_steps": 30, "checkpoint.every_steps": 30},
  )
  final = train.train_and_evaluate(config, workdir)
  return config, workdir, final


def test_tiny_long_range_run_learns(tiny_run):
  _, workdir, final = tiny_run
  rows = [r for r in writers.read_metrics(workdir) if r["split"] == "eval"]
  assert [r["step"] for r in rows] == [30, 60]
  assert {"loss", "baseline_loss", "sequence_accuracy"} <= set(final)
  assert final["baseline_loss"] == pytest.approx(math.log(4))
  assert final["sequence_accuracy"] > 0.5  # chance: 0.25
  assert final["loss"] < 0.9 * math.log(4)


def test_gradients_of_trained_and_initial_models(tiny_run):
  config, workdir, _ = tiny_run
  result = gradients.analyze_workdir(
    workdir,
    variants=[("attention", "elman", "attention"), ("lstm", "lstm", "last")],
    jacobian_examples=2,
  )
  phases = [(r["phase"], r["cell"], r["step"]) for r in result["decay"]]
  assert phases == [("init", "attention", 0), ("init", "lstm", 0), ("trained", "attention", 60)]
  for path in result["files"]:
    assert os.path.getsize(path) > 0
  rows = [r for r in result["curves"] if r["phase"] == "trained"]
  assert [r["t"] for r in rows] == list(range(1, config.data.length + 1))
  assert rows[-1]["grad_h_ratio"] == pytest.approx(1.0)


def test_gradients_cli_on_empty_workdir(tmp_path):
  workdir = str(tmp_path / "empty")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.gradients",
      "--workdir",
      workdir,
      "--config",
      "configs/long_range.py:cell=elman,task=adding,tiny=1",
      "--cells",
      "elman",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  for name in ("gradients.csv", "decay.csv", "gradients.png"):
    assert os.path.getsize(os.path.join(workdir, "gradients", name)) > 0
  assert "init     elman" in proc.stdout
  with open(os.path.join(workdir, "gradients", "gradients.csv")) as f:
    lines = f.read().splitlines()
  assert lines[0].startswith("phase,cell,t,grad_h_norm")
  assert len(lines) == 1 + 12  # T = 12 in tiny mode


def test_gradients_without_config_or_checkpoint_says_so(tmp_path):
  with pytest.raises(FileNotFoundError, match="no trained run in .* and no --config"):
    gradients.analyze_workdir(str(tmp_path))
