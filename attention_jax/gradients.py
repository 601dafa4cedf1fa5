"""Gradients through time: how much of the loss's signal reaches step t.

For ``h_t = f(h_{t-1}, x_t)`` the gradient reaching an early state is a product of step
Jacobians (Bengio et al. 1994; Pascanu et al. 2013, eqs. 3-5)::

    ∂L/∂h_t = ∂L/∂h_T · ∏_{k=t+1..T} ∂h_k/∂h_{k-1}

which shrinks geometrically in T − t when the Jacobians' norms are below 1. Computed per
step for a ``models.sequence`` model on a long-range task, in float64.
Documented in docs/vanishing.md#gradient-instruments.
"""

from __future__ import annotations

import copy
import csv
import math
import os
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from attention_jax import data as data_lib
from attention_jax import fileio, model_setup, objectives, plots, validation
from attention_jax import workdir as workdir_lib
from attention_jax.errors import ConfigError

# (label, model.cell, model.pooling) compared at initialization.
VARIANTS = (
  ("elman", "elman", "last"),
  ("gru", "gru", "last"),
  ("lstm", "lstm", "last"),
  ("attention", "elman", "attention"),
)


def variant_label(config) -> str:
  """``attention`` for attention pooling, else the cell's name."""
  return "attention" if config.model.pooling == "attention" else config.model.cell


def to_float64(model: nnx.Module) -> nnx.Module:
  """A copy of ``model`` with float64 parameters. Call under ``jax.enable_x64``."""
  graphdef, state = nnx.split(model)
  state = jax.tree.map(
    lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, state
  )
  return nnx.merge(graphdef, state)


def probe_gradients(model, objective, batch) -> tuple[jax.Array, jax.Array]:
  """Per-example ``∂L_i/∂h_t`` ``[B, T, H]`` and ``∂L_i/∂x_t`` ``[B, T, I]``.

  ``L_i`` is example i's loss; it depends on example i's states only, so the
  gradient of ``Σ_i L_i`` holds every example's own gradient.
  """
  inputs = batch["inputs"]
  B, T = inputs.shape[:2]
  x = model.features(inputs)
  state_probe = jnp.zeros((B, T, model.hidden_size), x.dtype)
  input_probe = jnp.zeros(x.shape, x.dtype)

  def total_loss(state_probe, input_probe):
    out = model(inputs, state_probe=state_probe, input_probe=input_probe)
    return objective.per_example_loss(out, batch).sum()

  return jax.grad(total_loss, argnums=(0, 1))(state_probe, input_probe)


def jacobian_norms(model, inputs: jax.Array) -> jax.Array:
  """``σ_max(∂h_T/∂h_t)`` per example and step: ``[B, T]``.

  One reverse pass per hidden unit (``jax.jacrev``) per example.
  """
  H = model.hidden_size

  def final_state(probe, one_input):  # (T, H), (T, …)
    x = model.features(one_input[None])
    final, _ = model.states(x, probe[None])
    return model.cell.output(final)[0]  # (H,)

  T = inputs.shape[1]
  probes = jnp.zeros((inputs.shape[0], T, H), model.head.kernel[...].dtype)
  jac = jax.vmap(jax.jacrev(final_state))(probes, inputs)  # (B, H_T, T, H_t)
  jac = jnp.swapaxes(jac, 1, 2)  # (B, T, H, H)
  return jnp.linalg.norm(jac, ord=2, axis=(-2, -1))  # (B, T)


def measure(
  model, objective, batch: dict[str, np.ndarray], *, jacobian_examples: int = 8
) -> dict[str, np.ndarray]:
  """Batch-averaged curves, float64 numpy ``[T]``: ``grad_h_norm``,
  ``grad_x_norm``, ``jacobian_sigma_max`` (the last over the first
  ``jacobian_examples`` examples; 0 skips it), and ``loss`` (scalar).

  In float64, parameters cast: in float32 the Elman and GRU norms underflow to
  exactly 0 over long sequences."""
  with jax.enable_x64(True):
    model64 = to_float64(model)
    graphdef, state = nnx.split(model64)
    batch64 = {k: jnp.asarray(v) for k, v in batch.items()}

    @jax.jit
    def norms(state, batch):
      m = nnx.merge(graphdef, state)
      gh, gx = probe_gradients(m, objective, batch)
      out = m(batch["inputs"])
      loss = objective.per_example_loss(out, batch).mean()
      return (jnp.linalg.norm(gh, axis=-1).mean(0), jnp.linalg.norm(gx, axis=-1).mean(0), loss)

    gh, gx, loss = norms(state, batch64)
    result = {
      "grad_h_norm": np.asarray(gh, np.float64),
      "grad_x_norm": np.asarray(gx, np.float64),
      "loss": float(loss),
    }
    if jacobian_examples:

      @jax.jit
      def sigmas(state, inputs):
        return jacobian_norms(nnx.merge(graphdef, state), inputs).mean(0)

      result["jacobian_sigma_max"] = np.asarray(
        sigmas(state, batch64["inputs"][:jacobian_examples]), np.float64
      )
  return result


def decay_per_step(curve: np.ndarray) -> float:
  """``exp(b)`` of the least-squares fit ``log g_t = a + b·(T − t)`` over
  ``t = 1 … T−1``; nan if fewer than two positive values."""
  g = np.asarray(curve, np.float64)[:-1]
  distance = np.arange(len(g), 0, -1, dtype=np.float64)  # T − t
  keep = g > 0
  if keep.sum() < 2:
    return float("nan")
  slope, _ = np.polyfit(distance[keep], np.log(g[keep]), 1)
  return float(math.exp(slope))


# --------------------------------------------------------------------------
# Workdir analysis


def trained_workdirs(workdir: str) -> list[str]:
  """``workdir`` if it holds a trained run, else its sub-directories that do
  (e.g. a sweep over cells)."""
  if workdir_lib.has_checkpoint(workdir):
    return [workdir]
  if not os.path.isdir(workdir):
    return []
  subs = [os.path.join(workdir, d) for d in sorted(os.listdir(workdir))]
  return [d for d in subs if os.path.isdir(d) and workdir_lib.has_checkpoint(d)]


def _batch(task, n: int) -> dict[str, np.ndarray]:
  data = task.eval_set("eval")
  return {k: v[:n] for k, v in data.items()}


def _curve_rows(phase: str, label: str, curves: dict) -> list[dict[str, Any]]:
  gh = curves["grad_h_norm"]
  sig = curves.get("jacobian_sigma_max")
  rows = []
  for t in range(len(gh)):
    rows.append(
      {
        "phase": phase,
        "cell": label,
        "t": t + 1,
        "grad_h_norm": gh[t],
        "grad_h_ratio": gh[t] / gh[-1],
        "grad_x_norm": curves["grad_x_norm"][t],
        "jacobian_sigma_max": "" if sig is None else sig[t],
      }
    )
  return rows


def _decay_row(phase, label, config, curves, steps) -> dict[str, Any]:
  gh = curves["grad_h_norm"]
  sig = curves.get("jacobian_sigma_max")
  return {
    "phase": phase,
    "cell": label,
    "task": config.data.task,
    "length": config.data.length,
    "step": steps,
    "loss": curves["loss"],
    "grad_h_ratio_first_last": gh[0] / gh[-1],
    "decay_per_step_grad_h": decay_per_step(gh),
    "decay_per_step_grad_x": decay_per_step(curves["grad_x_norm"]),
    "jacobian_sigma_first": "" if sig is None else sig[0],
    "decay_per_step_jacobian": "" if sig is None else decay_per_step(sig),
  }


def _write_csv(path: str, rows: list[dict]) -> None:
  with fileio.atomic_open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
      w.writerow({k: (f"{v:.6e}" if isinstance(v, float) else v) for k, v in r.items()})


def analyze_workdir(
  workdir: str,
  config=None,
  *,
  variants: Iterable = VARIANTS,
  examples: int | None = None,
  jacobian_examples: int = 8,
) -> dict[str, Any]:
  """Gradient curves of the trained run(s) in ``workdir`` and of the models at
  initialization; writes CSVs and the PNG under ``workdir/gradients/``.

  ``config`` (optional) sets the task, length and sizes of the models at
  initialization; without it the first trained run's config does. At
  initialization every variant in ``variants`` (label, cell, pooling) is
  measured. ``examples`` defaults to ``train.batch_size``.
  Returns ``{"curves": rows, "decay": rows, "files": [paths]}``.
  """
  trained = trained_workdirs(workdir)
  loaded = [workdir_lib.load(d) for d in trained]
  base = config if config is not None else (loaded[0].config if loaded else None)
  if base is None:
    raise FileNotFoundError(
      f"no trained run in {workdir} and no --config to build a model at initialization from"
    )
  validation.validate(base)
  if base.data.task not in data_lib.LONG_RANGE_TASKS:
    raise ConfigError(
      f"config key 'data.task' has value {base.data.task!r}; gradient "
      f"instruments need a long-range task: {', '.join(data_lib.LONG_RANGE_TASKS)}"
    )
  n = examples or base.train.batch_size

  curve_rows, decay_rows = [], []
  for label, cell, pooling in variants:
    cfg = ml_collections.ConfigDict(copy.deepcopy(base.to_dict()))
    cfg.model.cell, cfg.model.pooling = cell, pooling
    task = data_lib.make_task(cfg)
    model = model_setup.make_model(cfg, len(task.src_vocab), len(task.tgt_vocab))
    curves = measure(
      model, objectives.get(task.objective), _batch(task, n), jacobian_examples=jacobian_examples
    )
    curve_rows += _curve_rows("init", label, curves)
    decay_rows.append(_decay_row("init", label, cfg, curves, 0))
  for run in loaded:
    curves = measure(
      run.model, run.objective, _batch(run.task, n), jacobian_examples=jacobian_examples
    )
    label = variant_label(run.config)
    curve_rows += _curve_rows("trained", label, curves)
    decay_rows.append(_decay_row("trained", label, run.config, curves, run.step))

  out_dir = os.path.join(workdir, "gradients")
  os.makedirs(out_dir, exist_ok=True)
  files = [os.path.join(out_dir, f) for f in ("gradients.csv", "decay.csv", "gradients.png")]
  _write_csv(files[0], curve_rows)
  _write_csv(files[1], decay_rows)
  plots.save_gradient_curves(
    files[2], curve_rows, decay_rows, title=f"{base.data.task}, T = {base.data.length}"
  )
  return {"curves": curve_rows, "decay": decay_rows, "files": files}
