"""Plots and generated statements of a sweep's report (matplotlib, Agg).

Driven by the config file's ``REPORT`` dict (all keys optional):

* ``series``: override keys whose values label one line (``("model.name",
  "model.hidden_size")``); default: every swept key except ``panels``.
* ``panels``: one override key; one subplot per value (e.g. the training
  length limit).
* ``by_length_metric``: metric of the by-length plots (``sequence_accuracy``).
* ``heatmap``: ``{"where": {"model.name": "rnn_encdec"}, "rows":
  "model.hidden_size"}`` — a rows × source-length heatmap of the by-length
  metric for the points matching ``where``.
* ``x``: an override key; plots each of ``x_metrics`` (final eval values)
  against it, one line per series; ``solved``: ``{"metric": m, "below": v}``
  or ``{"metric": m, "above": v}`` says which points count as solved.
* ``extra``: names of functions in ``EXTRA_SECTIONS`` (gradient curves,
  ``probe``: what the context vector holds, ``alignment``: attention against
  the gold alignment, ``position_table``: where exact match falls below half).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after matplotlib.use
import numpy as np  # noqa: E402 - after matplotlib.use

from attention_jax import fileio  # noqa: E402 - after matplotlib.use
from attention_jax import workdir as workdir_lib  # noqa: E402 - after matplotlib.use
from attention_jax.errors import WorkdirError  # noqa: E402 - after matplotlib.use
from attention_jax.sweeps.tables import bands, label_of, markdown_table  # noqa: E402 - after matplotlib.use

DPI = 80


def _series_keys(sweep, spec) -> list[str]:
  if spec.get("series"):
    return list(spec["series"])
  keys = list(dict.fromkeys(k for p in sweep.points for k in p.overrides))
  return [k for k in keys if k != spec.get("panels")]


def _row_keys(sweep, spec) -> list[str]:
  """The keys that name one point in a table or a legend shared by every
  panel: the series keys and, where the report has panels, the panel key
  (else a point of each panel would read the same)."""
  keys = _series_keys(sweep, spec)
  panel_key = spec.get("panels")
  return keys + ([panel_key] if panel_key and panel_key not in keys else [])


def _label(overrides, keys) -> str:
  return label_of(overrides, keys) or "base"


def _grid(n: int):
  cols = min(n, 3)
  rows = math.ceil(n / cols)
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
  return fig, axes.ravel()


def _save(fig, path: str) -> str:
  fig.tight_layout()
  with fileio.atomic_open(path, "wb") as f:
    fig.savefig(f, format=os.path.splitext(path)[1][1:] or "png", dpi=DPI)
  plt.close(fig)
  return path


def _md_image(path: str, plots_dir: str, title: str) -> str:
  rel = os.path.join(os.path.basename(plots_dir), os.path.basename(path))
  return f"![{title}]({rel})\n"


# --------------------------------------------------------------------------
# Accuracy against source length


def length_stats(rows: list[dict], metric: str, train_min: int, train_max: int) -> dict[str, Any]:
  """Short-sentence value, tail values and where the metric halves.

  ``short``: mean over lengths ≤ max(train_min, 20% of the training limit);
  ``tail``: mean over the last 5 lengths inside the training range;
  ``beyond``: mean over lengths past the training limit;
  ``half_at``: the first length whose metric is below half of ``short``
  (None if it never is).
  """
  by_len = {int(r["length"]): float(r[metric]) for r in rows}
  lengths = sorted(by_len)
  short_cut = max(train_min, int(round(0.2 * train_max)))
  short = [by_len[L] for L in lengths if L <= short_cut]
  tail = [by_len[L] for L in lengths if train_max - 5 < L <= train_max]
  beyond = [by_len[L] for L in lengths if L > train_max]
  s = float(np.mean(short)) if short else float("nan")
  half = next((L for L in lengths if L > short_cut and by_len[L] < 0.5 * s), None)
  return {
    "short": s,
    "short_lengths": f"{min(lengths)}-{short_cut}",
    "tail": float(np.mean(tail)) if tail else float("nan"),
    "tail_lengths": f"{max(train_max - 4, 1)}-{train_max}",
    "beyond": float(np.mean(beyond)) if beyond else float("nan"),
    "beyond_lengths": f"{train_max + 1}-{max(lengths)}" if beyond else "",
    "half_at": half,
    "max_length": max(lengths),
  }


def _train_range(point) -> tuple[int, int]:
  try:
    d = workdir_lib.read_config(point.workdir).data
  except WorkdirError:
    return 1, 1
  return d.train_min_length, d.train_max_length


def _panel_title(panel_key, value, lo: int, hi: int) -> str:
  if panel_key and value is not None:
    return f"{panel_key.rsplit('.', 1)[-1]}={value} (trained on lengths {lo}-{hi})"
  return f"trained on lengths {lo}-{hi}"


def by_length_section(sweep, rows, by_length, plots_dir) -> list[str]:
  spec = sweep.report
  if not by_length:
    return []
  metric = spec.get("by_length_metric", "sequence_accuracy")
  series = _series_keys(sweep, spec)
  panel_key = spec.get("panels")
  points = [p for p in sweep.points if p.slug in by_length]
  panel_values = list(dict.fromkeys(p.overrides.get(panel_key) for p in points))
  fig, axes = _grid(len(panel_values))
  table, statements = [], []
  for ax, pv in zip(axes, panel_values, strict=False):  # the grid may have spare cells
    for p in points:
      if p.overrides.get(panel_key) != pv:
        continue
      r = by_length[p.slug]
      lo, hi = _train_range(p)
      ax.plot(
        [x["length"] for x in r],
        [x[metric] for x in r],
        marker=".",
        markersize=3,
        label=_label(p.overrides, series),
      )
      st = length_stats(r, metric, lo, hi)
      label = _label(p.overrides, _row_keys(sweep, spec))
      table.append(
        {
          "point": label,
          f"short ({st['short_lengths']})": st["short"],
          "last 5 trained": st["tail"],
          "beyond training": st["beyond"],
          "falls below half at length": st["half_at"] or f"never (≤ {st['max_length']})",
        }
      )
      if not st["short"] >= 0.1:
        statements.append(
          f"- **{label}** (trained on lengths ≤ {hi}): did not "
          f"learn the task ({metric} {st['short']:.2f} even on "
          f"lengths {st['short_lengths']})."
        )
      elif st["half_at"] is None:
        statements.append(
          f"- **{label}** (trained on lengths ≤ {hi}): stays above "
          f"half its short-sentence {metric} ({st['short']:.2f}) up "
          f"to length {st['max_length']}."
        )
      else:
        where = "inside" if st["half_at"] <= hi else "beyond"
        statements.append(
          f"- **{label}** (trained on lengths ≤ {hi}): {metric} "
          f"{st['short']:.2f} on short sources falls below half at "
          f"length {st['half_at']} ({where} the training range); "
          f"{st['tail']:.2f} on lengths {st['tail_lengths']}."
        )
    lo, hi = _train_range(next(p for p in points if p.overrides.get(panel_key) == pv))
    ax.axvline(hi + 0.5, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("source length")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(_panel_title(panel_key, pv, lo, hi), fontsize=9)
    ax.legend(fontsize=6)
  for ax in axes[len(panel_values) :]:
    ax.axis("off")
  path = _save(fig, os.path.join(plots_dir, f"by_length_{metric}.png"))
  out = [
    f"## {metric.replace('_', ' ')} against source length\n",
    "Dashed line: the longest training length; to its right the model extrapolates.\n",
    _md_image(path, plots_dir, "by length"),
    markdown_table(table),
    "### What the numbers show\n",
    "\n".join(statements) + "\n",
  ]
  out += _contrast(sweep, points, by_length, metric)
  for extra in spec.get("by_length_extra", ()):
    out += _by_length_plot_only(
      sweep, points, by_length, extra, series, panel_key, panel_values, plots_dir
    )
  return out


def _by_length_plot_only(
  sweep, points, by_length, metric, series, panel_key, panel_values, plots_dir
) -> list[str]:
  """A by-length figure of another metric (e.g. BLEU), without statements."""
  have = [p for p in points if all(r.get(metric) not in (None, "") for r in by_length[p.slug])]
  if not have:
    return []
  fig, axes = _grid(len(panel_values))
  for ax, pv in zip(axes, panel_values, strict=False):  # the grid may have spare cells
    for p in have:
      if p.overrides.get(panel_key) != pv:
        continue
      r = by_length[p.slug]
      ax.plot(
        [x["length"] for x in r],
        [float(x[metric]) for x in r],
        marker=".",
        markersize=3,
        label=_label(p.overrides, series),
      )
    lo, hi = _train_range(next((p for p in have if p.overrides.get(panel_key) == pv), have[0]))
    ax.axvline(hi + 0.5, color="gray", linestyle="--", linewidth=0.8)
    ax.set_xlabel("source length")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(_panel_title(panel_key, pv, lo, hi), fontsize=9)
    ax.legend(fontsize=6)
  for ax in axes[len(panel_values) :]:
    ax.axis("off")
  path = _save(fig, os.path.join(plots_dir, f"by_length_{metric}.png"))
  note = (
    " (corpus BLEU per length; outputs shorter than 4 tokens have no "
    "4-gram, so their BLEU is 0 by construction)"
    if metric == "bleu"
    else ""
  )
  return [
    f"## {metric.replace('_', ' ')} against source length{note}\n",
    _md_image(path, plots_dir, metric),
  ]


def _contrast(sweep, points, by_length, metric) -> list[str]:
  """Compares the values of ``REPORT["contrast"]`` (e.g. model.name) at equal other keys."""
  key = sweep.report.get("contrast")
  if not key:
    return []
  groups: dict[tuple, dict] = {}
  for p in points:
    rest = tuple(sorted((k, v) for k, v in p.overrides.items() if k != key))
    lo, hi = _train_range(p)
    groups.setdefault(rest, {})[p.overrides.get(key)] = (
      length_stats(by_length[p.slug], metric, lo, hi),
      hi,
    )
  lines = []
  for rest, vals in groups.items():
    if len(vals) < 2:
      continue
    where = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in rest)
    parts = ", ".join(f"{v} {st['tail']:.2f}" for v, (st, _) in vals.items())
    hi = next(iter(vals.values()))[1]
    lines.append(
      f"- {where}: {metric} on the longest trained lengths ({max(hi - 4, 1)}-{hi}): {parts}."
    )
  if not lines:
    return []
  return [f"### {key} side by side\n", "\n".join(lines) + "\n"]


def heatmap_section(sweep, rows, by_length, plots_dir) -> list[str]:
  spec = sweep.report.get("heatmap")
  if not spec or not by_length:
    return []
  metric = sweep.report.get("by_length_metric", "sequence_accuracy")
  where = spec.get("where", {})
  row_key = spec["rows"]
  panel_key = sweep.report.get("panels")
  points = [
    p
    for p in sweep.points
    if p.slug in by_length and all(p.overrides.get(k) == v for k, v in where.items())
  ]
  if not points:
    return []
  panel_values = list(dict.fromkeys(p.overrides.get(panel_key) for p in points))
  fig, axes = _grid(len(panel_values))
  for ax, pv in zip(axes, panel_values, strict=False):  # the grid may have spare cells
    ps = sorted(
      (p for p in points if p.overrides.get(panel_key) == pv),
      key=lambda p: p.overrides.get(row_key),
    )
    L = max(int(r["length"]) for p in ps for r in by_length[p.slug])
    grid = np.full((len(ps), L), np.nan)
    for i, p in enumerate(ps):
      for r in by_length[p.slug]:
        grid[i, int(r["length"]) - 1] = r[metric]
    im = ax.imshow(
      grid,
      aspect="auto",
      vmin=0,
      vmax=1,
      cmap="viridis",
      extent=(0.5, L + 0.5, len(ps) - 0.5, -0.5),
    )
    ax.set_yticks(range(len(ps)), [str(p.overrides.get(row_key)) for p in ps])
    ax.set_ylabel(row_key.rsplit(".", 1)[-1])
    ax.set_xlabel("source length")
    ax.axvline(_train_range(ps[0])[1] + 0.5, color="white", linestyle="--", linewidth=0.8)
    lo, hi = _train_range(ps[0])
    ax.set_title(
      f"{' '.join(f'{v}' for v in where.values())}, " + _panel_title(panel_key, pv, lo, hi),
      fontsize=9,
    )
    fig.colorbar(im, ax=ax, fraction=0.046)
  for ax in axes[len(panel_values) :]:
    ax.axis("off")
  path = _save(fig, os.path.join(plots_dir, "heatmap.png"))
  return [
    f"## {row_key.rsplit('.', 1)[-1]} × source length "
    f"({', '.join(f'{v}' for v in where.values())})\n",
    _md_image(path, plots_dir, "heatmap"),
  ]


# --------------------------------------------------------------------------
# Final metrics against a swept value


def x_section(sweep, rows, by_length, plots_dir) -> list[str]:
  spec = sweep.report
  x_key = spec.get("x")
  if not x_key:
    return []
  metrics = spec.get("x_metrics") or ["sequence_accuracy"]
  series = [k for k in _series_keys(sweep, spec) if k != x_key]
  done = [r for r in rows if r.get("status") == "done"]
  out = []
  for metric in metrics:
    have = [r for r in done if isinstance(r.get(metric), (int, float))]
    if not have:
      continue
    fig, axes = _grid(1)
    ax = axes[0]
    lines: dict[str, list] = {}
    for r in have:
      lines.setdefault(_label(r, series), []).append((r[x_key], r[metric]))
    for label, xy in lines.items():
      xy.sort()
      ax.plot(*zip(*xy, strict=True), marker="o", label=label)
    ax.set_xlabel(x_key.rsplit(".", 1)[-1])
    ax.set_ylabel(metric.replace("_", " "))
    if spec.get("logx"):
      ax.set_xscale("log")
    if spec.get("logy", {}).get(metric) if isinstance(spec.get("logy"), dict) else False:
      ax.set_yscale("log")
    ax.legend(fontsize=7)
    path = _save(fig, os.path.join(plots_dir, f"{metric}_vs_{x_key.rsplit('.', 1)[-1]}.png"))
    out += [
      f"## final {metric.replace('_', ' ')} against {x_key.rsplit('.', 1)[-1]}\n",
      _md_image(path, plots_dir, metric),
    ]
  solved = spec.get("solved")
  if solved:
    m = solved["metric"]
    table, statements = [], []
    groups: dict[str, list] = {}
    for r in done:
      if isinstance(r.get(m), (int, float)):
        groups.setdefault(_label(r, series), []).append(r)
    for label, rs in groups.items():
      rs.sort(key=lambda r: r[x_key])
      ok = [
        r for r in rs if (r[m] < solved["below"] if "below" in solved else r[m] > solved["above"])
      ]
      row = {"series": label}
      row.update({f"{x_key.rsplit('.', 1)[-1]}={r[x_key]}": r[m] for r in rs})
      table.append(row)
      cond = f"{m} < {solved['below']}" if "below" in solved else f"{m} > {solved['above']}"
      if ok:
        statements.append(
          f"- **{label}** reaches {cond} at "
          f"{x_key.rsplit('.', 1)[-1]} ∈ {{{', '.join(str(r[x_key]) for r in ok)}}}"
          f"; largest solved: {max(r[x_key] for r in ok)}."
        )
      else:
        statements.append(f"- **{label}** reaches {cond} at none of {[r[x_key] for r in rs]}.")
    out += [
      f"### final {m} per point\n",
      markdown_table(table),
      "### What the numbers show\n",
      "\n".join(statements) + "\n",
    ]
  return out


def gradients_section(sweep, rows, tables, plots_dir) -> list[str]:
  """‖∂L/∂h_t‖ curves (``attention_jax.gradients``): a row per T, init | trained."""
  grads = tables.get("gradients", {})
  if not grads:
    return []
  decay = tables.get("decay", {})
  x_key = sweep.report.get("x", "data.length")
  x_name = x_key.rsplit(".", 1)[-1]
  series = [k for k in _series_keys(sweep, sweep.report) if k != x_key]
  points = [p for p in sweep.points if p.slug in grads]
  xs = sorted({p.overrides.get(x_key) for p in points}, key=lambda v: (v is None, v))
  fig, axes = plt.subplots(len(xs), 2, figsize=(8.4, 2.6 * len(xs)), squeeze=False, sharey="row")
  table, statements = [], []
  tiny = np.finfo(np.float64).tiny
  for i, x in enumerate(xs):
    for p in points:
      if p.overrides.get(x_key) != x:
        continue
      label = _label(p.overrides, series)
      for j, phase in enumerate(("init", "trained")):
        rs = [r for r in grads[p.slug] if r["phase"] == phase]
        if rs:
          axes[i, j].semilogy(
            [r["t"] for r in rs], [max(float(r["grad_h_norm"]), tiny) for r in rs], label=label
          )
      d = {r["phase"]: r for r in decay.get(p.slug, [])}
      if "init" in d and "trained" in d:
        row = {"point": label, x_name: x}
        for phase in ("init", "trained"):
          row[f"‖g_1‖/‖g_T‖ {phase}"] = float(d[phase]["grad_h_ratio_first_last"])
          row[f"decay/step {phase}"] = float(d[phase]["decay_per_step_grad_h"])
        table.append(row)
        statements.append(
          f"- **{label}**, {x_name}={x}: ‖∂L/∂h_1‖/‖∂L/∂h_T‖ = "
          f"{row['‖g_1‖/‖g_T‖ init']:.2g} at initialization, "
          f"{row['‖g_1‖/‖g_T‖ trained']:.2g} after training (fitted factor per "
          f"step back in time {row['decay/step init']:.3f} → "
          f"{row['decay/step trained']:.3f})."
        )
    for j, when in enumerate(("at initialization", "after training")):
      ax = axes[i, j]
      ax.set_title(f"{x_name}={x}, {when}", fontsize=9)
      ax.set_xlabel("step t")
      ax.set_ylabel("‖∂L/∂h_t‖")
      ax.legend(fontsize=6)
  path = _save(fig, os.path.join(plots_dir, "gradient_norms.png"))
  return [
    "## ‖∂L/∂h_t‖ through time\n",
    "From `attention_jax.gradients` (float64; the head reads h_T, so the "
    "readout is included; decay/step: exp of the slope of log‖∂L/∂h_t‖ "
    "against T − t over t = 1…T−1).\n",
    _md_image(path, plots_dir, "gradient norms"),
    markdown_table(table),
    "### What the gradients show\n",
    "\n".join(statements) + "\n",
  ]


def probe_section(sweep, rows, tables, plots_dir) -> list[str]:
  """What linear probes read out of each point's decoder initial state
  (``attention_jax.probe``, ``probe/initial_state.csv``): mean accuracy over
  source positions against length, per point and state, beside the same
  probes at initialization and chance."""
  probe = tables.get("probe", {})
  if not probe:
    return []
  series = _row_keys(sweep, sweep.report)
  points = [p for p in sweep.points if p.slug in probe]
  fig, axes = _grid(2)
  table, statements = [], []
  for p in points:
    rs = probe[p.slug]
    for name in sorted({r["state"] for r in rs}):
      mine = [r for r in rs if r["state"] == name]
      lengths = sorted({int(r["length"]) for r in mine})

      def mean(key, L, mine=mine):
        return float(np.mean([float(r[key]) for r in mine if int(r["length"]) == L]))

      label = _label(p.overrides, series) + ("" if name == "s" else f" {name}")
      (line,) = axes[0].plot(
        lengths, [mean("accuracy", L) for L in lengths], marker=".", markersize=3, label=label
      )
      axes[0].plot(
        lengths,
        [mean("control_accuracy", L) for L in lengths],
        color=line.get_color(),
        linestyle=":",
        linewidth=0.8,
      )
      axes[1].plot(
        lengths,
        [mean("selectivity", L) for L in lengths],
        marker=".",
        markersize=3,
        color=line.get_color(),
        label=label,
      )
      row = {"point": label}
      for lo, hi in bands(lengths):
        sel = [L for L in lengths if lo <= L <= hi]
        row[f"lengths {lo}-{hi}"] = float(np.mean([mean("accuracy", L) for L in sel]))
      lo, hi = bands(lengths)[-1]
      longest = [r for r in mine if lo <= int(r["length"]) <= hi]
      first = float(np.mean([float(r["accuracy"]) for r in longest if int(r["position"]) == 1]))
      last = float(
        np.mean([float(r["accuracy"]) for r in longest if int(r["position"]) == int(r["length"])])
      )
      control = float(np.mean([float(r["control_accuracy"]) for r in longest]))
      chance = float(np.mean([float(r["chance"]) for r in mine]))
      row.update(
        {
          f"first token ({lo}-{hi})": first,
          f"last token ({lo}-{hi})": last,
          f"at init ({lo}-{hi})": control,
          "chance": chance,
        }
      )
      table.append(row)
      statements.append(
        f"- **{label}**: on sources of {lo}–{hi} tokens the initial state gives "
        f"back {row[f'lengths {lo}-{hi}']:.2f} of the tokens (the same probes at "
        f"initialization {control:.2f}, chance {chance:.2f}); the first token "
        f"{first:.2f}, the last {last:.2f}."
      )
  for ax, ylabel in zip(
    axes, ("mean probe accuracy (dotted: at init)", "selectivity (trained - at init)"), strict=True
  ):
    ax.set_xlabel("source length")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  axes[0].set_ylim(-0.02, 1.02)
  path = _save(fig, os.path.join(plots_dir, "probe_initial_state.png"))
  return [
    "## What the decoder's initial state holds (linear probes)\n",
    "Softmax-regression probes (`attention_jax.probe`) read the source token "
    "at each position from the decoder's initial state (the encoder–decoder's "
    "context vector; RNNsearch's s_0 = tanh(W_s h←_1)) on held-out sources, "
    "200 per length (80% fit the probes, 20% score them); the control is the "
    "same probes on the model at initialization. Accuracy is the mean over "
    "source positions. Per-position curves and decoder-step maps: each "
    "point's `probe/`.\n",
    _md_image(path, plots_dir, "probe"),
    markdown_table(table),
    "### What the probes show\n",
    "\n".join(statements) + "\n",
  ]


def alignment_section(sweep, rows, tables, plots_dir) -> list[str]:
  """Alignment accuracy of the attention models' teacher-forced attention
  against the gold alignment, by source length (``by_length.csv`` columns
  ``alignment_accuracy``, ``gold_attention_mass``)."""
  by_length = tables.get("by_length", {})
  points = [
    p
    for p in sweep.points
    if p.slug in by_length
    and any(r.get("alignment_accuracy") not in (None, "") for r in by_length[p.slug])
  ]
  if not points:
    return []
  series = _row_keys(sweep, sweep.report)
  fig, axes = _grid(1)
  table = []
  for p in points:
    rs = [r for r in by_length[p.slug] if r.get("alignment_accuracy") not in (None, "")]
    label = _label(p.overrides, series)
    axes[0].plot(
      [r["length"] for r in rs],
      [float(r["alignment_accuracy"]) for r in rs],
      marker=".",
      markersize=3,
      label=label,
    )
    lo, hi = _train_range(p)
    row = {"point": label}
    for name, keep in (
      (f"trained lengths {lo}-{hi}", lambda L, lo=lo, hi=hi: lo <= L <= hi),
      (f"beyond {hi}", lambda L, hi=hi: L > hi),
    ):
      sel = [r for r in rs if keep(int(r["length"]))]
      for metric in ("alignment_accuracy", "gold_attention_mass"):
        w = [float(r["examples"]) for r in sel]
        row[f"{metric} ({name})"] = (
          float(np.average([float(r[metric]) for r in sel], weights=w)) if sel else None
        )
    table.append(row)
  for hi in sorted({_train_range(p)[1] for p in points}):  # each training limit
    axes[0].axvline(hi + 0.5, color="gray", linestyle="--", linewidth=0.8)
  axes[0].set_xlabel("source length")
  axes[0].set_ylabel("alignment accuracy")
  axes[0].set_ylim(-0.03, 1.03)
  axes[0].legend(fontsize=6)
  path = _save(fig, os.path.join(plots_dir, "alignment_accuracy.png"))
  return [
    "## Attention against the gold alignment\n",
    "Teacher-forced on the reference: alignment accuracy is the share of "
    "target tokens whose largest attention weight is on their gold source "
    "token, gold mass the mean weight there (Transformer: the last decoder "
    "layer's cross-attention averaged over heads). Weighted by examples per "
    "length.\n",
    _md_image(path, plots_dir, "alignment"),
    markdown_table(table),
  ]


def position_table_section(sweep, rows, tables, plots_dir) -> list[str]:
  """Exact match by source length, one row per point, and the first length
  where each falls below half of its short-sentence value (the length
  extrapolation of ``configs/positions.py``)."""
  by_length = tables.get("by_length", {})
  if not by_length:
    return []
  metric = sweep.report.get("by_length_metric", "sequence_accuracy")
  series = _row_keys(sweep, sweep.report)
  table = []
  for p in sweep.points:
    if p.slug not in by_length:
      continue
    rs = by_length[p.slug]
    lo, hi = _train_range(p)
    st = length_stats(rs, metric, lo, hi)
    by_len = {int(r["length"]): float(r[metric]) for r in rs}
    row = {"point": _label(p.overrides, series)}
    for L in sweep.report.get("table_lengths", ()):
      row[f"L={L}"] = by_len.get(L)
    row["falls below half at"] = st["half_at"] or f"never (≤ {st['max_length']})"
    table.append(row)
  return [
    f"## {metric.replace('_', ' ')} by length: where each falls below half\n",
    f"Columns: {metric} at a few source lengths; the last column is the first "
    "length whose value is below half the point's mean over short sources "
    "(the table of `length_stats`).\n",
    markdown_table(table),
  ]


# Functions named by ``REPORT["extra"]``: (sweep, rows, tables, plots_dir) -> sections.
EXTRA_SECTIONS: dict[str, Callable] = {
  "gradients": gradients_section,
  "probe": probe_section,
  "alignment": alignment_section,
  "position_table": position_table_section,
}


def make_report_sections(sweep, rows, tables, plots_dir) -> list[str]:
  """Markdown sections (with their PNGs written to ``plots_dir``)."""
  by_length = tables.get("by_length", {})
  out = []
  for fn in (by_length_section, heatmap_section, x_section):
    out += fn(sweep, rows, by_length, plots_dir)
  for name in sweep.report.get("extra", ()):
    out += EXTRA_SECTIONS[name](sweep, rows, tables, plots_dir)
  return out
