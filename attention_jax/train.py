"""Training and evaluation: ``train_and_evaluate(config, workdir)``.

One jitted, pure train step ``(state, batch) -> (state, measurements)`` over
the model's parameters (an ``nnx.State``) and optax state; randomness is
``fold_in(rng, step)``. Running again on the same workdir resumes the run from
its latest checkpoint, including the data pipeline's position.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from attention_jax import checkpoint as checkpoint_lib
from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import models
from attention_jax import objectives
from attention_jax import sharding as sharding_lib
from attention_jax import writers
from attention_jax.data.vocab import PAD


class NonFiniteError(RuntimeError):
  """The loss or gradient norm became NaN or Inf."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 []
  params: nnx.State        # the model's nnx.Param variables
  opt_state: Any           # optax state over params
  rng: jax.Array           # uint32 [2], the run's base key


# --------------------------------------------------------------------------
# Optimizer


def make_schedule(config) -> optax.Schedule:
  t = config.train
  peak, warmup = t.learning_rate, t.warmup_steps
  if t.schedule == "cosine":
    if not warmup:
      return optax.cosine_decay_schedule(peak, t.steps, alpha=t.end_lr_fraction)
    return optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup, t.steps, end_value=peak * t.end_lr_fraction)
  if t.schedule == "rsqrt":   # Vaswani et al. 2017, eq. 3 (scaled to peak)
    def rsqrt(step):
      step = jnp.maximum(step, 1).astype(jnp.float32)
      w = max(warmup, 1)
      return peak * jnp.minimum(step / w, jnp.sqrt(w / step))
    return rsqrt
  if warmup:
    return optax.linear_schedule(0.0, peak, warmup)
  return optax.constant_schedule(peak)


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  t = config.train
  schedule = make_schedule(config)
  if t.optimizer == "adam":
    opt = optax.adam(schedule)
  elif t.optimizer == "adamw":
    opt = optax.adamw(schedule, weight_decay=t.weight_decay)
  elif t.optimizer == "sgd":
    opt = optax.sgd(schedule, momentum=0.9)
  else:  # adadelta, as Bahdanau et al. 2014 (ρ = 0.95, ε = 1e-6)
    opt = optax.adadelta(schedule, rho=0.95, eps=1e-6)
  parts = []
  if t.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(t.grad_clip_norm))
  parts.append(opt)
  return optax.chain(*parts), schedule


# --------------------------------------------------------------------------
# State and steps


def create_state(config, src_vocab_size: int, tgt_vocab_size: int):
  """Builds the model and its train state. Returns (graphdef, state, tx, schedule)."""
  model = models.build_model(config, src_vocab_size, tgt_vocab_size)
  graphdef, params = nnx.split(model, nnx.Param)
  tx, schedule = make_optimizer(config)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(config.seed))
  return graphdef, state, tx, schedule


def merge_for_compute(graphdef, params, config):
  """The model with parameters cast to ``train.compute_dtype``.

  Mixed precision: parameters and optimizer state stay float32; the forward
  and backward passes run in the compute dtype (the cast's gradient brings
  the float32 gradients back); losses are computed in float32.
  """
  dtype = jnp.dtype(config.train.compute_dtype) if config is not None else None
  if dtype is not None and dtype != jnp.float32:
    params = jax.tree.map(
        lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p,
        params)
  return nnx.merge(graphdef, params)


def make_train_step(graphdef, tx, schedule, config, objective):
  """The pure step function (not yet jitted)."""

  def loss_fn(params, batch, rng):
    model = merge_for_compute(graphdef, params, config)
    return objective.train_loss(model, batch, rng, config)

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    measurements = {
        "loss": loss,
        **extra,
        "grad_norm": optax.global_norm(grads),
        "param_norm": optax.global_norm(params),
        "update_norm": optax.global_norm(updates),
        "learning_rate": schedule(state.step),
    }
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=opt_state)
    return new_state, measurements

  return train_step


def make_eval_step(graphdef, objective, config=None):
  """``(params, batch) -> objective.eval_batch(model, batch)``."""

  def eval_step(params, batch):
    return objective.eval_batch(merge_for_compute(graphdef, params, config), batch)

  return eval_step


def evaluate(eval_step, objective, params, eval_set: dict[str, np.ndarray],
             batch_size: int) -> dict[str, float]:
  """Runs ``eval_step`` over the whole set in fixed-shape batches."""
  N = len(next(iter(eval_set.values())))
  sums: dict[str, float] = {}
  each: dict[str, list] = {}
  for start in range(0, N, batch_size):
    chunk = {k: v[start:start + batch_size] for k, v in eval_set.items()}
    real = len(next(iter(chunk.values())))
    if real < batch_size:   # pad with all-PAD rows: they count nothing
      chunk = {k: np.concatenate([v, np.full((batch_size - real, *v.shape[1:]),
                                             PAD, v.dtype)]) for k, v in chunk.items()}
    out = jax.device_get(eval_step(params, chunk))
    for k, v in out.items():
      if k.startswith("sum_"):
        sums[k] = sums.get(k, 0.0) + float(v)
      elif k.startswith("each_"):
        each.setdefault(k, []).append(np.asarray(v)[:real])
  return objective.finalize(sums, {k: np.concatenate(v) for k, v in each.items()})


# --------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class Run:
  """Everything a run needs, rebuilt the same way for training and loading."""
  config: Any
  task: Any
  objective: Any
  graphdef: Any
  state: TrainState
  tx: Any
  schedule: Any


def build_run(config, workdir: str | None = None) -> Run:
  """``workdir``: where the task finds its saved vocabularies/tokenizers."""
  task = data_lib.build_task(config, workdir)
  graphdef, state, tx, schedule = create_state(
      config, len(task.src_vocab), len(task.tgt_vocab))
  return Run(config, task, objectives.get(task.objective, task, config), graphdef,
             state, tx, schedule)


def load_model(workdir: str, step: int | None = None):
  """Rebuilds a trained model from ``workdir/config.json`` and its checkpoint.

  Executes no config file. Returns ``(model, config, run)``.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} a workdir?")
  with open(path, encoding="utf-8") as f:
    config = config_lib.from_json(f.read())
  run = build_run(config, workdir)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    state, _ = ckpt.restore(run.state, step)
  finally:  # also on a failed restore: an open manager spews at exit
    ckpt.close()
  run.state = state
  return nnx.merge(run.graphdef, state.params), config, run


def _write_config(workdir: str, config) -> None:
  path = os.path.join(workdir, "config.json")
  text = config_lib.to_json(config)
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      if f.read() != text:
        logging.warning("config differs from %s; rewriting it", path)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def _check_finite(pending, ckpt) -> None:
  for step, m in pending:
    for key in ("loss", "grad_norm"):
      v = float(m[key])
      if not np.isfinite(v):
        last = ckpt.latest_step()
        raise NonFiniteError(
            f"{key} became {v} at step {step}; last good checkpoint: "
            f"{'none' if last is None else f'step {last}'} in {ckpt.directory}")


def train_and_evaluate(config, workdir: str, *,
                       stop_after_step: int | None = None) -> dict[str, float]:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint).

  ``stop_after_step`` ends the process's work after that step as a kill would
  (no extra checkpoint), for tests of resume. Returns the last eval metrics.
  """
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  total = config.train.steps
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), max_to_keep=config.checkpoint.max_to_keep,
      async_save=config.checkpoint.async_save)
  latest = ckpt.latest_step()
  if latest is not None and latest >= total:
    logging.info("resumed from checkpoint at step %d in %s: training already "
                 "finished (train.steps=%d); nothing to do", latest, workdir, total)
    ckpt.close()
    evals = [m for m in writers.read_metrics(workdir) if m["split"] == "eval"]
    return evals[-1] if evals else {}

  run = build_run(config, workdir)
  primary = jax.process_index() == 0   # one process writes the files
  if primary:
    _write_config(workdir, config)
    data_lib.save_task_files(run.task, workdir)

  mesh = sharding_lib.make_mesh(config.train.num_devices)
  for key in ("train.batch_size", "eval.batch_size"):
    sharding_lib.check_batch_size(config[key.split(".")[0]][key.split(".")[1]], mesh, key)
  state = sharding_lib.put_replicated(run.state, mesh)
  train_iter = run.task.train_iterator()
  if latest is not None:
    state, meta = ckpt.restore(state, latest)
    train_iter.set_state(meta["data"])
    logging.info("resumed from checkpoint at step %d in %s", latest, workdir)
  start = int(state.step)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info("model %s: %s parameters; training steps %d..%d on %s; "
               "data-parallel over %d device(s), %d process(es); compute dtype %s",
               config.model.name, f"{n_params:,}", start, total,
               jax.devices()[0].platform, mesh.devices.size, jax.process_count(),
               config.train.compute_dtype)

  donate = (0,) if jax.default_backend() != "cpu" else ()
  rep, data = sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)
  jit_train_step = jax.jit(
      make_train_step(run.graphdef, run.tx, run.schedule, config, run.objective),
      in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=donate)
  jit_eval_step = jax.jit(make_eval_step(run.graphdef, run.objective, config),
                          in_shardings=(rep, data))
  train_step = lambda s, b: jit_train_step(s, sharding_lib.put_batch(b, mesh))
  eval_step = lambda p, b: jit_eval_step(p, sharding_lib.put_batch(b, mesh))
  eval_set = run.task.eval_set("eval")

  resume_step = start if latest is not None else None
  writer = (writers.MetricWriter(workdir, resume_step=resume_step) if primary
            else writers.NullWriter())
  progress = writers.Progress(total, start)
  pending: list[tuple[int, dict]] = []
  last_eval: dict[str, float] = {}
  c = config
  try:
    for step in range(start + 1, total + 1):
      batch = next(train_iter)
      progress.add_tokens(run.task.count_tokens(batch))
      state, measurements = train_step(state, batch)
      pending.append((step, measurements))
      last = step == total
      if step % c.train.log_every_steps == 0 or last:
        pending = jax.device_get(pending)
        _check_finite(pending, ckpt)
        rates = progress.report(step)
        row = {k: float(np.mean([m[k] for _, m in pending])) for k in pending[-1][1]}
        row["learning_rate"] = float(pending[-1][1]["learning_rate"])
        row.update(rates)
        writer.write(step, "train", row)
        logging.info(progress.line(step, row["loss"], rates))
        pending = []
      if step % c.eval.every_steps == 0 or last:
        t0 = time.perf_counter()
        last_eval = evaluate(eval_step, run.objective, state.params, eval_set,
                             c.eval.batch_size)
        writer.write(step, "eval", last_eval)
        logging.info("eval at step %d: %s (%.1fs)", step, "  ".join(
            f"{k} {v:.4f}" for k, v in last_eval.items()), time.perf_counter() - t0)
        progress.report(step)  # do not count evaluation time as training time
      if step % c.checkpoint.every_steps == 0 or last:
        pending = jax.device_get(pending)
        _check_finite(pending, ckpt)
        ckpt.save(step, state, {"data": train_iter.get_state()})
      if step == stop_after_step:
        logging.info("stopping after step %d as asked", step)
        return last_eval
    ckpt.wait_until_finished()
    logging.info("finished: step %d, checkpoints in %s", total, ckpt.directory)
  finally:
    writer.close()
    ckpt.close()
  return last_eval
