"""Figures (matplotlib, Agg backend: no display needed).

* :func:`attention_figure` — the alignment matrix of one translation, source
  tokens along the x axis (top), output tokens down the y axis, grey scale
  with white = 0 … black = 1, as Bahdanau et al. 2014, Fig. 3.
* :func:`metric_by_length_figure` — BLEU / exact match against source length,
  as Bahdanau et al. 2014, Fig. 2 (with the count of each bucket; BLEU's 95%
  bootstrap interval as a band when the rows have one).
* :func:`compare_by_length_figure` — BLEU against source length of several
  models in one figure, each with its interval band (``experiments.compare``).
* :func:`save_probe_by_position`, :func:`save_probe_maps` — what linear
  probes read out of the decoder's initial state (by source position, one
  line per length) and out of each decoder state (step × position)
  (``experiments.probe``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after matplotlib.use
import numpy as np  # noqa: E402 - after matplotlib.use

from attention_jax import fileio  # noqa: E402 - after matplotlib.use


def attention_figure(
  weights: np.ndarray,
  src_tokens: Sequence[str],
  out_tokens: Sequence[str],
  title: str | None = None,
  gold: Sequence[int] | None = None,
):
  """weights [len(out_tokens), len(src_tokens)] in [0, 1] -> Figure.

  Row t is the attention the model used to predict output token t. ``gold``:
  the task's gold alignment of the reference (per target position t the
  source position, −1 for none), outlined in red on rows that exist.
  """
  weights = np.asarray(weights, np.float32)
  T, S = weights.shape
  if (T, S) != (len(out_tokens), len(src_tokens)):
    raise ValueError(
      f"attention is {T}x{S} but there are {len(out_tokens)} "
      f"output and {len(src_tokens)} source tokens"
    )
  cell = 0.32  # inches per token
  w = max(3.0, 1.6 + cell * S)
  h = max(2.5, 1.4 + cell * T)
  fig, ax = plt.subplots(figsize=(w, h), dpi=110)
  ax.imshow(weights, cmap="gray_r", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
  for t, j in enumerate(list(gold or [])[:T]):
    if 0 <= j < S:
      ax.add_patch(
        plt.Rectangle((j - 0.5, t - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2)
      )
  if gold is not None:
    title = ((title + "; ") if title else "") + "red: gold"
  ax.set_xticks(np.arange(S))
  ax.set_xticklabels(list(src_tokens), rotation=90, fontsize=9)
  ax.set_yticks(np.arange(T))
  ax.set_yticklabels(list(out_tokens), fontsize=9)
  ax.xaxis.tick_top()
  ax.xaxis.set_label_position("top")
  ax.set_xlabel("source")
  ax.set_ylabel("output")
  ax.tick_params(length=0)
  fig.tight_layout(rect=(0, 0.06 if title else 0, 1, 1))
  if title:
    fig.text(0.02, 0.01, title, fontsize=8, ha="left", va="bottom")
  return fig


def save_attention_heatmap(
  path: str,
  weights: np.ndarray,
  src_tokens: Sequence[str],
  out_tokens: Sequence[str],
  title: str | None = None,
  gold: Sequence[int] | None = None,
) -> str:
  fig = attention_figure(weights, src_tokens, out_tokens, title, gold)
  _save(fig, path)
  return path


def _band(ax, x, rows, key, color):
  """Fills the interval ``row[key] = [low, high]`` where rows have one."""
  ci = [r.get(key) for r in rows]
  if any(c is not None for c in ci):
    lo = np.array([np.nan if c is None else c[0] for c in ci], float)
    hi = np.array([np.nan if c is None else c[1] for c in ci], float)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)


def metric_by_length_figure(
  rows: Sequence[dict[str, Any]],
  metrics: Sequence[str] = ("bleu", "sequence_accuracy"),
  title: str | None = None,
  unit: str = "tokens",
):
  """Each metric of ``rows`` (from ``metrics.summarize_by_length``) against
  the source-length bucket (in ``unit``); accuracies are shown in percent
  like BLEU; a metric's ``NAME_ci`` interval, if present, as a band."""
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(max(4.5, 0.55 * len(rows) + 2.5), 3.4), dpi=110)
  for name in metrics:
    y = [r.get(name) for r in rows]
    if all(v is None for v in y):
      continue
    scale = 100.0 if name.endswith("accuracy") else 1.0
    y = np.array([np.nan if v is None else v * scale for v in y], float)
    label = f"{name} (%)" if scale == 100.0 else name
    (line,) = ax.plot(x, y, marker="o", label=label)
    _band(ax, x, rows, f"{name}_ci", line.get_color())
  _length_axis(ax, x, rows, unit, title, legend="lower left")
  fig.tight_layout()
  return fig


def _length_axis(ax, x, rows, unit: str, title: str | None, legend: str) -> None:
  """Buckets along x (labels, ``n=`` counts), a 0–100 y range, legend, title."""
  ax.set_xticks(x)
  ax.set_xticklabels([r["bucket"] for r in rows], rotation=45 if len(rows) > 8 else 0)
  ax.set_xlabel(f"source length ({unit})")
  ax.set_ylim(-2, 102)
  ax.grid(alpha=0.3)
  for xi, r in zip(x, rows, strict=True):
    ax.annotate(
      f"n={r['count']}",
      (xi, 0),
      xytext=(0, 3),
      textcoords="offset points",
      ha="center",
      fontsize=7,
      color="0.4",
    )
  ax.legend(fontsize=8, loc=legend)
  if title:
    ax.set_title(title, fontsize=9)


def save_metric_by_length(
  path: str,
  rows,
  metrics=("bleu", "sequence_accuracy"),
  title: str | None = None,
  unit: str = "tokens",
) -> str:
  _save(metric_by_length_figure(rows, metrics, title, unit), path)
  return path


def compare_by_length_figure(
  series: Sequence[tuple[str, Sequence[dict]]],
  metric: str = "bleu",
  unit: str = "words",
  title: str | None = None,
):
  """``metric`` against the source-length bucket for each ``(label, rows)``
  (rows: ``bucket``, ``count``, ``metric``, ``metric_ci`` = [low, high]), all
  models in one figure, the 95% intervals as bands (Bahdanau et al. 2014,
  Fig. 2 style). Every series has the same buckets."""
  n = len(series[0][1])
  x = np.arange(n)
  fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * n + 3.0), 3.8), dpi=110)
  for label, rows in series:
    y = np.array([np.nan if r.get(metric) is None else r[metric] for r in rows], float)
    (line,) = ax.plot(x, y, marker="o", label=label)
    _band(ax, x, rows, f"{metric}_ci", line.get_color())
  ax.set_ylabel(f"{metric} (band: 95% bootstrap interval)")
  _length_axis(ax, x, series[0][1], unit, title, legend="best")
  fig.tight_layout()
  return fig


def save_compare_by_length(
  path: str, series, metric: str = "bleu", unit: str = "words", title: str | None = None
) -> str:
  _save(compare_by_length_figure(series, metric, unit, title), path)
  return path


def save_gradient_curves(
  path: str, curve_rows: list[dict], decay_rows: list[dict], title: str = ""
) -> None:
  """The gradient instruments' log-scale PNG (``attention_jax.gradients``):
  rows ‖∂L/∂h_t‖ and σ_max(∂h_T/∂h_t), a column per phase (at initialization,
  trained); each legend gives the fitted decay per step of ``decay_rows``."""
  decay = {(r["phase"], r["cell"]): r["decay_per_step_grad_h"] for r in decay_rows}
  phases = [p for p in ("init", "trained") if any(r["phase"] == p for r in curve_rows)]
  has_jac = any(r["jacobian_sigma_max"] != "" for r in curve_rows)
  nrows = 2 if has_jac else 1
  fig, axes = plt.subplots(
    nrows, len(phases), figsize=(5.5 * len(phases), 4 * nrows), squeeze=False, sharey="row"
  )
  tiny = np.finfo(np.float64).tiny
  all_labels = list(dict.fromkeys(r["cell"] for r in curve_rows))
  color = {label: f"C{i}" for i, label in enumerate(all_labels)}  # same in every panel
  for j, phase in enumerate(phases):
    rows = [r for r in curve_rows if r["phase"] == phase]
    labels = list(dict.fromkeys(r["cell"] for r in rows))
    for label in labels:
      rs = [r for r in rows if r["cell"] == label]
      t = [r["t"] for r in rs]
      gh = np.array([r["grad_h_norm"] for r in rs], np.float64)
      axes[0, j].semilogy(
        t,
        np.maximum(gh, tiny),
        color=color[label],
        label=f"{label} (×{decay[phase, label]:.3g}/step)",
      )
      if has_jac and rs[0]["jacobian_sigma_max"] != "":
        sig = np.array([r["jacobian_sigma_max"] for r in rs], np.float64)
        axes[1, j].semilogy(t, np.maximum(sig, tiny), color=color[label], label=label)
    axes[0, j].set_title(f"{'at initialization' if phase == 'init' else 'trained'}")
    for ax in axes[:, j]:
      ax.yaxis.set_tick_params(labelleft=True)
    axes[0, j].set_ylabel("‖∂L/∂h_t‖ (readout included)")
    axes[0, j].legend(fontsize=8)
    if has_jac:
      axes[1, j].set_ylabel("σ_max(∂h_T/∂h_t) (no readout)")
      axes[1, j].legend(fontsize=8)
    axes[-1, j].set_xlabel("step t")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  _save(fig, path, dpi=100)


def save_probe_by_position(path: str, rows: Sequence[dict[str, Any]], title: str = "") -> str:
  """Probe accuracy against source position, one line per source length
  (colour: length), a column per probed state (``s``; LSTM ``h``, ``c``),
  the trained model above and the same model at initialization below; the
  dashed line is chance. ``rows``: ``probe.py``'s initial-state rows."""
  states = sorted({r["state"] for r in rows})
  lengths = sorted({r["length"] for r in rows})
  cmap = plt.get_cmap("viridis")
  color = {L: cmap(i / max(1, len(lengths) - 1)) for i, L in enumerate(lengths)}
  fig, axes = plt.subplots(
    2,
    len(states),
    figsize=(5.0 * len(states), 6.4),
    squeeze=False,
    sharey=True,
    constrained_layout=True,
  )
  for c, name in enumerate(states):
    for r_i, (key, when) in enumerate(
      (("accuracy", "trained"), ("control_accuracy", "at initialization"))
    ):
      ax = axes[r_i, c]
      for L in lengths:
        rs = sorted(
          (r for r in rows if r["state"] == name and r["length"] == L), key=lambda r: r["position"]
        )
        ax.plot(
          [r["position"] for r in rs],
          [r[key] for r in rs],
          color=color[L],
          linewidth=1.0,
          marker="." if len(lengths) < 6 else None,
        )
      chance = np.mean([r["chance"] for r in rows if r["state"] == name])
      ax.axhline(chance, color="0.4", linestyle="--", linewidth=0.8)
      ax.set_ylim(-0.02, 1.02)
      ax.set_xlabel("source position j")
      ax.set_ylabel("probe accuracy (held-out sources)")
      ax.set_title(f"initial state {name!r}, {when}", fontsize=9)
      ax.grid(alpha=0.3)
  sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(min(lengths), max(lengths)))
  fig.colorbar(sm, ax=list(axes.ravel()), label="source length L", fraction=0.03)
  if title:
    fig.suptitle(title + "  (dashed: chance)", fontsize=10)
  _save(fig, path, dpi=100)
  return path


def save_probe_maps(
  path: str,
  rows: Sequence[dict[str, Any]],
  needed: dict[int, Sequence[int] | None] | None = None,
  title: str = "",
) -> str:
  """Probe accuracy of the decoder state after output step i (rows) for the
  source token at position j (columns), one panel per probed length and
  state. ``needed[L]``: per target position the gold source position; the
  cell (i, needed[i−1]) — the token step i must write — is outlined in red."""
  states = sorted({r["state"] for r in rows})
  lengths = sorted({r["length"] for r in rows})
  fig, axes = plt.subplots(
    len(states),
    len(lengths),
    figsize=(3.6 * len(lengths) + 1.0, 3.4 * len(states)),
    squeeze=False,
    constrained_layout=True,
  )
  im = None
  for a, name in enumerate(states):
    for b, L in enumerate(lengths):
      ax = axes[a, b]
      grid = np.full((L + 1, L), np.nan)
      rs = [r for r in rows if r["state"] == name and r["length"] == L]
      for r in rs:
        grid[r["step"] - 1, r["position"] - 1] = r["accuracy"]
      im = ax.imshow(
        grid,
        vmin=0,
        vmax=1,
        cmap="viridis",
        aspect="auto",
        extent=(0.5, L + 0.5, L + 1.5, 0.5),
        interpolation="nearest",
      )
      for i, j in enumerate(list((needed or {}).get(L) or [])[:L]):
        if j >= 0:
          ax.add_patch(
            plt.Rectangle((j + 0.5, i + 0.5), 1, 1, fill=False, edgecolor="red", linewidth=0.8)
          )
      chance = np.mean([r["chance"] for r in rs])
      ax.set_title(f"{name!r}, length {L} (chance {chance:.2f})", fontsize=9)
      ax.set_xlabel("source position j")
      ax.set_ylabel("decoder step i (L+1: EOS)")
  fig.colorbar(im, ax=list(axes.ravel()), label="probe accuracy", fraction=0.03)
  if title:
    fig.suptitle(
      title
      + ("\n(red: the source token step i must output)" if needed and any(needed.values()) else ""),
      fontsize=9,
    )
  _save(fig, path, dpi=100)
  return path


def _save(fig, path: str, dpi: int | None = None) -> None:
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  with fileio.atomic_open(path, "wb") as f:
    fig.savefig(f, format="png", dpi=dpi)
  plt.close(fig)
