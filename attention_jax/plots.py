"""Figures, through matplotlib's object API: no global figure state, no backend switch.

:func:`line_figure` is the one helper behind every curve figure of the reports
(``evaluate``, ``compare``, sweeps), written as a PNG at least ``MIN_WIDTH_PX`` wide and
an SVG beside it; :func:`attention_figure` and :func:`metric_by_length_figure` draw
Bahdanau et al. 2014's Fig. 3 (an alignment matrix) and Fig. 2 (a score against source
length); the probe figures are :func:`save_probe_by_position` and :func:`save_probe_maps`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import cm, colormaps, colors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from attention_jax import fileio

MIN_WIDTH_PX = 1000  # paper figures: PNGs at least this wide
DPI = 120
LINE_STYLES = ("-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 3)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


@dataclasses.dataclass
class Curve:
  """One line of a :func:`line_figure`: ``y`` against ``x``, an optional band
  ``[low, high]`` (NaN where there is none), the model it belongs to
  (``color``: one colour per distinct value) and its size or variant
  (``style``: one line style per distinct value)."""

  label: str
  x: Sequence[float]
  y: Sequence[float]
  low: Sequence[float] | None = None
  high: Sequence[float] | None = None
  color: str | None = None  # e.g. the model's name (default: the label)
  style: str | None = None  # e.g. "hidden_size=64" (default: solid)


def _nan_array(values) -> np.ndarray:
  return np.array([np.nan if v is None or v == "" else float(v) for v in values], float)


def fitted_ylim(curves: Sequence[Curve], pad: float = 0.06, bounds=None) -> tuple[float, float]:
  """The y range of the data (curves and bands) with ``pad`` of it either
  side, kept inside ``bounds`` (e.g. (0, 1) for an accuracy) when given."""
  vals = [_nan_array(c.y) for c in curves]
  vals += [_nan_array(b) for c in curves for b in (c.low, c.high) if b is not None]
  flat = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.array([])
  if not flat.size:
    return (0.0, 1.0)
  lo, hi = float(flat.min()), float(flat.max())
  least = 0.1 * (bounds[1] - bounds[0]) if bounds is not None else 0.1 * max(abs(hi), 1.0)
  if hi - lo < least:  # flat data: a range of at least `least` around it
    mid = (hi + lo) / 2
    lo, hi = mid - least / 2, mid + least / 2
    if bounds is not None:  # shifted inside the bounds, not cut
      shift = max(0.0, bounds[0] - lo) - max(0.0, hi - bounds[1])
      lo, hi = lo + shift, hi + shift
  span = hi - lo
  lo, hi = lo - pad * span, hi + pad * span
  if bounds is not None:
    lo, hi = max(lo, bounds[0] - pad * span), min(hi, bounds[1] + pad * span)
  return lo, hi


def line_figure(
  panels: Sequence[tuple[str, Sequence[Curve]]],
  *,
  xlabel: str,
  ylabel: str,
  caption: str = "",
  xticks: Sequence[tuple[float, str]] | None = None,
  vlines: Sequence[float] = (),
  ybounds: tuple[float, float] | None = None,
  logx: bool = False,
  logy: bool = False,
  markers: bool = True,
) -> Figure:
  """The report's curve figure: a panel per ``(title, curves)``, the same
  colour for a model and line style for a size in every panel, bands for the
  intervals, one legend outside the panels (right), the y range fitted to
  the data (inside ``ybounds``), ``vlines`` dashed (e.g. the longest
  training length), ``caption`` as a line under the figure."""
  panels = [(t, list(cs)) for t, cs in panels if cs] or [("", [])]
  all_curves = [c for _, cs in panels for c in cs]
  color_keys = list(dict.fromkeys(c.color or c.label for c in all_curves))
  style_keys = list(dict.fromkeys(c.style for c in all_curves if c.style is not None))
  color_of = {k: f"C{i % 10}" for i, k in enumerate(color_keys)}
  style_of = {k: LINE_STYLES[i % len(LINE_STYLES)] for i, k in enumerate(style_keys)}
  marker_of = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(style_keys)}
  cols = min(len(panels), 3)
  rows = math.ceil(len(panels) / cols)
  width = max(MIN_WIDTH_PX / DPI + 0.4, 4.6 * cols + 3.2)
  fig = Figure(figsize=(width, 3.8 * rows + 0.5), dpi=DPI, layout="constrained")
  axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
  ylim = fitted_ylim(all_curves, bounds=ybounds)
  handles: dict[str, Line2D] = {}
  for ax, (title, curves) in zip(axes, panels, strict=False):
    for c in curves:
      x = np.asarray(c.x, float)
      color = color_of[c.color or c.label]
      style = style_of.get(c.style, "-")
      marker = marker_of.get(c.style, "o") if markers else None
      (line,) = ax.plot(
        x,
        _nan_array(c.y),
        color=color,
        linestyle=style,
        marker=marker,
        markersize=3.5,
        linewidth=1.4,
        label=c.label,
      )
      if c.low is not None and c.high is not None:
        ax.fill_between(
          x, _nan_array(c.low), _nan_array(c.high), color=color, alpha=0.15, linewidth=0
        )
      handles.setdefault(c.label, line)
    for v in vlines:
      ax.axvline(v, color="0.5", linestyle="--", linewidth=0.8)
    if xticks is not None:
      ax.set_xticks([t for t, _ in xticks], [lab for _, lab in xticks], fontsize=8)
    if logx:
      ax.set_xscale("log")
    if logy:
      ax.set_yscale("log")
    else:
      ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
      ax.set_title(title, fontsize=9)
  for ax in axes[len(panels) :]:
    ax.set_axis_off()
  if handles:
    fig.legend(
      list(handles.values()), list(handles), loc="outside right upper", fontsize=8, frameon=False
    )
  if caption:  # wrapped to the figure's width (about 7 px per character at 8 pt)
    text = textwrap.fill(caption, width=int(width * DPI / 7.0))
    fig.supxlabel(text, fontsize=8, x=0.01, ha="left")
  return fig


def save_figure(fig: Figure, path: str, dpi: int | None = None, svg: bool = True) -> list[str]:
  """Writes ``path`` (PNG) and, with ``svg``, the same figure as ``path``
  with ``.svg``, each atomically; returns the paths written."""
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  out = []
  for ext, fmt in ((".png", "png"), (".svg", "svg")) if svg else ((".png", "png"),):
    target = os.path.splitext(path)[0] + ext if ext != ".png" else path
    with fileio.atomic_open(target, "wb") as f:
      fig.savefig(f, format=fmt, dpi=dpi or fig.dpi)
    out.append(target)
  return out


def save_line_figure(path: str, panels, **kwargs) -> list[str]:
  """:func:`line_figure` written as ``path`` (PNG) and its SVG."""
  return save_figure(line_figure(panels, **kwargs), path)


def attention_figure(
  weights: np.ndarray,
  src_tokens: Sequence[str],
  out_tokens: Sequence[str],
  title: str | None = None,
  gold: Sequence[int] | None = None,
):
  """weights [len(out_tokens), len(src_tokens)] in [0, 1] -> Figure.

  Source tokens along the x axis (top), output tokens down the y axis, white =
  0 … black = 1, as Bahdanau et al. 2014, Fig. 3. Row t is the attention the
  model used to predict output token t. ``gold``:
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
  fig = Figure(figsize=(w, h), dpi=110)
  ax = fig.subplots()
  ax.imshow(weights, cmap="gray_r", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
  for t, j in enumerate(list(gold or [])[:T]):
    if 0 <= j < S:
      ax.add_patch(Rectangle((j - 0.5, t - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.2))
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


def _bucket_curve(label: str, rows: Sequence[dict], key: str, scale: float = 1.0, **kw) -> Curve:
  """A curve over length buckets (x = 0, 1, ...): ``row[key]`` and its
  ``row[key + "_ci"]`` band (none where a bucket has no interval)."""
  ci = [r.get(f"{key}_ci") or (None, None) for r in rows]
  y = [None if r.get(key) is None else r[key] * scale for r in rows]
  lo = [None if c[0] is None else c[0] * scale for c in ci]
  hi = [None if c[1] is None else c[1] * scale for c in ci]
  has_band = any(v is not None for v in lo)
  return Curve(label, range(len(rows)), y, lo if has_band else None, hi if has_band else None, **kw)


def _bucket_ticks(rows: Sequence[dict]) -> list[tuple[float, str]]:
  """Each bucket's label with its count under it (not on the curves)."""
  return [(i, f"{r['bucket']}\nn={r['count']}") for i, r in enumerate(rows)]


def _bucket_caption(rows: Sequence[dict], extra: str = "") -> str:
  small = [r["bucket"] for r in rows if r.get("count") is not None and r["count"] < MIN_BUCKET]
  note = (
    f"; buckets under {MIN_BUCKET} sentences ({', '.join(map(str, small))}): no interval, no p"
    if small
    else ""
  )
  return f"n: sentences per bucket{note}" + (f"; {extra}" if extra else "")


MIN_BUCKET = 30  # attention_jax.metrics.MIN_BUCKET: fewer sentences get no interval or p


def metric_by_length_figure(
  rows: Sequence[dict[str, Any]],
  metrics: Sequence[str] = ("bleu", "sequence_accuracy"),
  title: str | None = None,
  unit: str = "tokens",
) -> Figure:
  """Each metric of ``rows`` (from ``metrics.summarize_by_length``) against
  the source-length bucket (in ``unit``); accuracies are shown in percent
  like BLEU; a metric's ``NAME_ci`` interval, if present, as a band."""
  curves = []
  for name in metrics:
    if all(r.get(name) is None for r in rows):
      continue
    scale = 100.0 if name.endswith("accuracy") else 1.0
    label = f"{name.replace('_', ' ')} (%)" if scale == 100.0 else name
    curves.append(_bucket_curve(label, rows, name, scale))
  return line_figure(
    [(title or "", curves)],
    xlabel=f"source length ({unit})",
    ylabel="score (BLEU; accuracy in %)",
    caption=_bucket_caption(rows, "bands: 95% bootstrap interval over sentences"),
    xticks=_bucket_ticks(rows),
    ybounds=(0.0, 100.0),
  )


def save_metric_by_length(
  path: str,
  rows,
  metrics=("bleu", "sequence_accuracy"),
  title: str | None = None,
  unit: str = "tokens",
) -> str:
  save_figure(metric_by_length_figure(rows, metrics, title, unit), path)
  return path


def compare_by_length_figure(
  series: Sequence[tuple[str, Sequence[dict]]],
  metric: str = "bleu",
  unit: str = "words",
  title: str | None = None,
  caption: str = "",
) -> Figure:
  """``metric`` against the source-length bucket for each ``(label, rows)``
  (rows: ``bucket``, ``count``, ``metric``, ``metric_ci`` = [low, high]), all
  models in one figure, the 95% intervals as bands (Bahdanau et al. 2014,
  Fig. 2 style). Every series has the same buckets."""
  rows0 = series[0][1]
  return line_figure(
    [(title or "", [_bucket_curve(label, rows, metric) for label, rows in series])],
    xlabel=f"source length ({unit})",
    ylabel=metric.replace("bleu", "BLEU").replace("chrf", "chrF"),
    caption=_bucket_caption(rows0, caption),
    xticks=_bucket_ticks(rows0),
    ybounds=(0.0, 100.0),
  )


def save_compare_by_length(
  path: str,
  series,
  metric: str = "bleu",
  unit: str = "words",
  title: str | None = None,
  caption: str = "",
) -> str:
  save_figure(compare_by_length_figure(series, metric, unit, title, caption), path)
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
  fig = Figure(figsize=(5.5 * len(phases), 4 * nrows))
  axes = fig.subplots(nrows, len(phases), squeeze=False, sharey="row")
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
  cmap = colormaps["viridis"]
  color = {L: cmap(i / max(1, len(lengths) - 1)) for i, L in enumerate(lengths)}
  fig = Figure(figsize=(5.0 * len(states), 6.4), layout="constrained")
  axes = fig.subplots(2, len(states), squeeze=False, sharey=True)
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
  sm = cm.ScalarMappable(cmap=cmap, norm=colors.Normalize(min(lengths), max(lengths)))
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
  fig = Figure(figsize=(3.6 * len(lengths) + 1.0, 3.4 * len(states)), layout="constrained")
  axes = fig.subplots(len(states), len(lengths), squeeze=False)
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
            Rectangle((j + 0.5, i + 0.5), 1, 1, fill=False, edgecolor="red", linewidth=0.8)
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
