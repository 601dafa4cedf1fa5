"""The pure training step: state, optimizer, schedule, mixed precision. No files, no loop.

``train_step(state, batch) -> (state, measurements)`` is one pure function of the model's
parameters (an ``nnx.State``) and the optax state; randomness is ``fold_in(rng, step)``.
Parameters and optimizer state stay float32; ``train.compute_dtype = "bfloat16"`` runs the
products in bf16 (:func:`merge_for_compute`; docs/scale.md#mixed-precision). The
registries ``SCHEDULES``, ``OPTIMIZERS`` and ``COMPUTE_DTYPES`` are read by validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from attention_jax import model_setup
from attention_jax.data.vocab import PAD


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 []
  params: nnx.State  # the model's nnx.Param variables
  opt_state: Any  # optax state over params
  rng: jax.Array  # uint32 [2], the run's base key


# --------------------------------------------------------------------------
# Optimizer and learning-rate schedule


def _constant(peak: float, warmup: int, steps: int, end_fraction: float):
  del steps, end_fraction
  if warmup:
    return optax.linear_schedule(0.0, peak, warmup)
  return optax.constant_schedule(peak)


def _cosine(peak: float, warmup: int, steps: int, end_fraction: float):
  """Linear warm-up, then cosine decay to ``end_fraction`` of the peak."""
  if not warmup:
    return optax.cosine_decay_schedule(peak, steps, alpha=end_fraction)
  if warmup >= steps:  # nothing left to decay over
    return optax.linear_schedule(0.0, peak, warmup)
  return optax.warmup_cosine_decay_schedule(0.0, peak, warmup, steps, end_value=peak * end_fraction)


def _rsqrt(peak: float, warmup: int, steps: int, end_fraction: float):
  """Vaswani et al. 2017, eq. 3, scaled to ``peak``:
  lr = peak · min(step / warmup, √(warmup / step))."""
  del steps, end_fraction
  w = max(warmup, 1)

  def rsqrt(step):
    step = jnp.maximum(step, 1).astype(jnp.float32)
    return peak * jnp.minimum(step / w, jnp.sqrt(w / step))

  return rsqrt


# train.schedule -> (peak, warmup, steps, end_fraction) -> optax schedule
SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
  "constant": _constant,
  "cosine": _cosine,
  "rsqrt": _rsqrt,
}

# train.optimizer -> (schedule, train config) -> optax transformation
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
  "adam": lambda lr, t: optax.adam(lr),
  "adamw": lambda lr, t: optax.adamw(lr, weight_decay=t.weight_decay),
  "sgd": lambda lr, t: optax.sgd(lr, momentum=0.9),
  # Bahdanau et al. 2014: Adadelta with ρ = 0.95, ε = 1e-6
  "adadelta": lambda lr, t: optax.adadelta(lr, rho=0.95, eps=1e-6),
}

# The train.* keys only some optimizers and schedules read (validation refuses
# them, away from their defaults, with the others).
OPTIMIZER_KEYS = {"adamw": ("weight_decay",)}
SCHEDULE_KEYS = {"cosine": ("end_lr_fraction",)}

COMPUTE_DTYPES = ("float32", "bfloat16")

# Schedules whose learning rate at a step does not depend on train.steps.
STEPS_FREE_SCHEDULES = ("constant", "rsqrt")


def make_schedule(config) -> optax.Schedule:
  """The learning-rate schedule; a warm-up longer than the run (a short smoke
  run of a long config) is cut to ``train.steps``."""
  train_config = config.train
  return SCHEDULES[train_config.schedule](
    train_config.learning_rate,
    min(train_config.warmup_steps, train_config.steps),
    train_config.steps,
    train_config.end_lr_fraction,
  )


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Global-norm clipping (``train.grad_clip_norm`` > 0), then the optimizer."""
  train_config = config.train
  schedule = make_schedule(config)
  parts = []
  if train_config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(train_config.grad_clip_norm))
  parts.append(OPTIMIZERS[train_config.optimizer](schedule, train_config))
  return optax.chain(*parts), schedule


# --------------------------------------------------------------------------
# State and steps


def make_train_state(config, src_vocab_size: int, tgt_vocab_size: int):
  """Builds the model and its train state. Returns (graphdef, state, tx, schedule)."""
  model = model_setup.make_model(config, src_vocab_size, tgt_vocab_size)
  graphdef, params = nnx.split(model, nnx.Param)
  tx, schedule = make_optimizer(config)
  state = TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    opt_state=tx.init(params),
    rng=jax.random.PRNGKey(config.seed),
  )
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
      lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, params
    )
  return nnx.merge(graphdef, params)


def make_train_step(graphdef, tx, schedule, config, objective):
  """The pure step function (not yet jitted).

  ``measurements["finite"]`` is whether loss, gradient, update and parameter
  norms are all finite. With ``config.train.skip_nonfinite`` a non-finite step
  keeps the previous parameters and optimizer state, as
  ``optax.apply_if_finite``: the step counter and the data advance, the
  optimizer's own count (hence the learning-rate schedule) does not.
  ``measurements["learning_rate"]`` is the rate this step applied.
  """
  skip = bool(config.train.get("skip_nonfinite", False))

  def loss_fn(params, batch, rng):
    model = merge_for_compute(graphdef, params, config)
    return objective.train_loss(model, batch, rng, config)

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    (loss, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    update_norm = optax.global_norm(updates)
    param_norm = optax.global_norm(params)
    finite = (
      jnp.isfinite(loss)
      & jnp.isfinite(grad_norm)
      & jnp.isfinite(update_norm)
      & jnp.isfinite(param_norm)
    )
    if skip:

      def keep(new, old):
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

      params = keep(params, state.params)
      opt_state = keep(opt_state, state.opt_state)
    measurements = {
      "loss": loss,
      **extra,
      "grad_norm": grad_norm,
      "param_norm": param_norm,
      "update_norm": update_norm,
      "learning_rate": schedule(_schedule_count(state)),
      "finite": finite,
    }
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, measurements

  return train_step


def _schedule_count(state: TrainState) -> jax.Array:
  """The optimizer's schedule step (``state.step`` unless steps were skipped)."""

  def is_sched(x):
    return isinstance(x, optax.ScaleByScheduleState)

  counts = [x.count for x in jax.tree.leaves(state.opt_state, is_leaf=is_sched) if is_sched(x)]
  return counts[0] if counts else state.step


@jax.jit
def all_finite(tree) -> jax.Array:
  """True iff every floating-point leaf of ``tree`` is finite."""
  leaves = [
    jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)
  ]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_eval_step(graphdef, objective, config=None):
  """``(params, batch) -> objective.eval_batch(model, batch)``."""

  def eval_step(params, batch):
    return objective.eval_batch(merge_for_compute(graphdef, params, config), batch)

  return eval_step


def abstract_state(config, task) -> TrainState:
  """The train state's shapes and dtypes (``jax.ShapeDtypeStruct``), computed
  without allocating or initializing any parameter."""
  return jax.eval_shape(
    lambda: make_train_state(config, len(task.src_vocab), len(task.tgt_vocab))[1]
  )


def run_eval(
  eval_step, params, eval_set: dict[str, np.ndarray], batch_size: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """Runs ``eval_step`` over the whole set in fixed-shape batches.

  The last batch is padded with all-PAD rows (they count nothing). Returns
  ``(sums, each)``: the ``sum_*`` outputs added over batches, and the
  ``each_*`` per-example outputs concatenated with the padding rows removed
  (``objective.finalize(sums, each)`` turns them into metrics).
  """
  N = len(next(iter(eval_set.values())))
  sums: dict[str, float] = {}
  each: dict[str, list] = {}
  for start in range(0, N, batch_size):
    chunk = {k: v[start : start + batch_size] for k, v in eval_set.items()}
    real = len(next(iter(chunk.values())))
    if real < batch_size:  # pad with all-PAD rows: they count nothing
      chunk = {
        k: np.concatenate([v, np.full((batch_size - real, *v.shape[1:]), PAD, v.dtype)])
        for k, v in chunk.items()
      }
    out = jax.device_get(eval_step(params, chunk))
    for k, v in out.items():
      if k.startswith("sum_"):
        sums[k] = sums.get(k, 0.0) + float(v)
      elif k.startswith("each_"):
        each.setdefault(k, []).append(np.asarray(v)[:real])
  return sums, {k: np.concatenate(v) for k, v in each.items()}


def evaluate(
  eval_step, objective, params, eval_set: dict[str, np.ndarray], batch_size: int
) -> dict[str, Any]:
  """The objective's metrics of the whole set (:func:`run_eval` + finalize)."""
  return objective.finalize(*run_eval(eval_step, params, eval_set, batch_size))
