"""Plots and generated statements of a sweep's report (matplotlib's Figure
API through :mod:`attention_jax.plots`: PNG ≥ 1000 px wide and SVG).

The report passes the sweep with its seeds folded (one point per swept
setting; ``attention_jax.sweeps.report.group_points``): each by-length table
is the mean over the point's seeds with ``_low``/``_high`` bands, and
``tables["by_length_runs"]`` keeps each seed's own rows, from which every
headline statistic (where a curve falls below half, the short-sentence
value) is given with its median and range over seeds.

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

import numpy as np
from matplotlib.figure import Figure

from attention_jax import workdir as workdir_lib
from attention_jax.errors import WorkdirError
from attention_jax.plots import DPI, MIN_WIDTH_PX, Curve, save_figure, save_line_figure
from attention_jax.sweeps.tables import bands, label_of, markdown_table

BAND = "band: 95% bootstrap interval over seeds and, for exact match, examples"


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
  width = max(MIN_WIDTH_PX / DPI + 0.4, 4.6 * cols + 1.0)
  fig = Figure(figsize=(width, 3.6 * rows), dpi=DPI, layout="constrained")
  return fig, fig.subplots(rows, cols, squeeze=False).ravel()


def _save(fig, path: str) -> str:
  save_figure(fig, path)
  return path


def _curve_keys(series: list[str]) -> tuple[str | None, list[str]]:
  """The key whose value picks a curve's colour (the model: ``model.name``
  if swept, else the first series key) and those picking its line style."""
  if not series:
    return None, []
  color = "model.name" if "model.name" in series else series[0]
  return color, [k for k in series if k != color]


def _by_length_curve(p, series, rows: list[dict], metric: str):
  """One point's ``metric`` against source length, with its band."""
  low, high = _band_of(rows, metric)
  lengths = [x["length"] for x in rows]
  return _curve(p, series, lengths, [float(x[metric]) for x in rows], low, high)


def _curve(p, series, x, y, low=None, high=None) -> Curve:
  color_key, style_keys = _curve_keys(series)
  return Curve(
    _label(p.overrides, series),
    x,
    y,
    low,
    high,
    color=_label(p.overrides, [color_key]) if color_key else None,
    style=label_of(p.overrides, style_keys) or None,
  )


def _seeds_caption(runs: dict[str, list], by_length: dict[str, list], points) -> str:
  """``mean of 3 seeds (0, 1, 2) per point; n = 100 examples per length and seed``."""
  n_seeds = sorted({len(runs.get(p.slug, ())) for p in points if p.slug in runs})
  n_ex = sorted({int(r["examples"]) for p in points for r in by_length.get(p.slug, [])})
  seeds = "/".join(map(str, n_seeds)) or "1"
  ex = f"{n_ex[0]}" if len(n_ex) == 1 else (f"{n_ex[0]}–{n_ex[-1]}" if n_ex else "?")
  return f"mean of {seeds} seed(s) per point; n = {ex} examples per length and seed; {BAND}"


def spread(values: list, none: str = "never") -> str:
  """``median [min–max] over k seeds`` of a per-seed statistic (None or NaN:
  ``none``, e.g. a curve that never falls below half)."""
  values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
  vals = [v for v in values if v is not None]
  if not values:
    return "–"
  if len(values) == 1:
    return none if values[0] is None else f"{values[0]:.3g}"
  never = len(values) - len(vals)
  if not vals:
    return f"{none} (all {len(values)} seeds)"
  med = float(np.median(vals))
  out = f"{med:.3g} [{min(vals):.3g}–{max(vals):.3g}] over {len(vals)} seeds"
  return out + (f"; {none} in {never}" if never else "")


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


def _seed_tables(tables: dict, slug: str) -> list[list[dict]]:
  """Each seed's own by-length rows of a point (its mean table when the
  report has no per-seed tables)."""
  runs = tables.get("by_length_runs", {}).get(slug)
  return runs or [tables.get("by_length", {}).get(slug, [])]


def _band_of(rows: list[dict], metric: str):
  lo = [r.get(f"{metric}_low") for r in rows]
  hi = [r.get(f"{metric}_high") for r in rows]
  if all(v in (None, "") for v in lo):
    return None, None
  return lo, hi


def by_length_section(sweep, rows, tables, plots_dir) -> list[str]:
  spec = sweep.report
  by_length = tables.get("by_length", {})
  if not by_length:
    return []
  metric = spec.get("by_length_metric", "sequence_accuracy")
  series = _series_keys(sweep, spec)
  panel_key = spec.get("panels")
  points = [p for p in sweep.points if p.slug in by_length]
  panel_values = list(dict.fromkeys(p.overrides.get(panel_key) for p in points))
  panels, vlines, table, statements = [], set(), [], []
  runs = tables.get("by_length_runs", {})
  for pv in panel_values:
    curves = []
    for p in points:
      if p.overrides.get(panel_key) != pv:
        continue
      r = by_length[p.slug]
      lo, hi = _train_range(p)
      curves.append(_by_length_curve(p, series, r, metric))
      st = length_stats(r, metric, lo, hi)
      per_seed = [length_stats(t, metric, lo, hi) for t in _seed_tables(tables, p.slug) if t]
      halves = [x["half_at"] for x in per_seed]
      shorts = [x["short"] for x in per_seed]
      n_ex = sorted({int(x["examples"]) for x in r})
      label = _label(p.overrides, _row_keys(sweep, spec))
      table.append(
        {
          "point": label,
          "seeds": len(per_seed),
          "n per length": n_ex[0] if len(n_ex) == 1 else f"{n_ex[0]}-{n_ex[-1]}",
          f"short ({st['short_lengths']})": spread(shorts, "–"),
          "last 5 trained": st["tail"],
          "beyond training": st["beyond"],
          "falls below half at length": spread(halves)
          if len(halves) > 1
          else (st["half_at"] or f"never (≤ {st['max_length']})"),
        }
      )
      seeds = f"{len(per_seed)} seed(s), n = {n_ex[0] if n_ex else '?'} per length"
      if not st["short"] >= 0.1:
        statements.append(
          f"- **{label}** (trained on lengths ≤ {hi}; {seeds}): did not "
          f"learn the task ({metric} {spread(shorts, '–')} even on "
          f"lengths {st['short_lengths']})."
        )
      elif all(h is None for h in halves):
        statements.append(
          f"- **{label}** (trained on lengths ≤ {hi}; {seeds}): stays above "
          f"half its short-sentence {metric} ({spread(shorts)}) up "
          f"to length {st['max_length']} in every seed."
        )
      else:
        where = (
          "inside"
          if all(h is not None and h <= hi for h in halves)
          else "beyond"
          if all(h is None or h > hi for h in halves)
          else "inside or beyond, by seed,"
        )
        statements.append(
          f"- **{label}** (trained on lengths ≤ {hi}; {seeds}): {metric} "
          f"{spread(shorts)} on short sources falls below half at "
          f"length {spread(halves)} ({where} the training range); "
          f"{st['tail']:.2f} (mean over seeds) on lengths {st['tail_lengths']}."
        )
    lo, hi = _train_range(next(p for p in points if p.overrides.get(panel_key) == pv))
    vlines.add(hi + 0.5)
    panels.append((_panel_title(panel_key, pv, lo, hi), curves))
  path = os.path.join(plots_dir, f"by_length_{metric}.png")
  unit = next((r.get("length_unit") for t in by_length.values() for r in t), None) or "symbols"
  save_line_figure(
    path,
    panels,
    xlabel=f"source length ({unit})",
    ylabel=f"{metric.replace('_', ' ')} (fraction)",
    caption=_seeds_caption(runs, by_length, points) + "; dashed: the longest training length",
    vlines=sorted(vlines) if len(vlines) == 1 else (),
    ybounds=(0.0, 1.0),
  )
  out = [
    f"## {metric.replace('_', ' ')} against source length\n",
    "Dashed line: the longest training length; to its right the model extrapolates. "
    "Curves: the mean over seeds; bands: 95% bootstrap over seeds and examples "
    "(`metrics.seed_bootstrap`). Table and statements: each statistic's median "
    "[min–max] over seeds, and the examples per length.\n",
    _md_image(path, plots_dir, "by length"),
    markdown_table(table),
    "### What the numbers show\n",
    "\n".join(statements) + "\n",
  ]
  out += _contrast(sweep, points, by_length, metric)
  for extra in spec.get("by_length_extra", ()):
    out += _by_length_plot_only(
      sweep, points, tables, extra, series, panel_key, panel_values, plots_dir
    )
  return out


def _by_length_plot_only(
  sweep, points, tables, metric, series, panel_key, panel_values, plots_dir
) -> list[str]:
  """A by-length figure of another metric (e.g. BLEU), without statements."""
  by_length = tables.get("by_length", {})
  have = [p for p in points if all(r.get(metric) not in (None, "") for r in by_length[p.slug])]
  if not have:
    return []
  panels, vlines = [], set()
  for pv in panel_values:
    curves = []
    for p in have:
      if p.overrides.get(panel_key) != pv:
        continue
      curves.append(_by_length_curve(p, series, by_length[p.slug], metric))
    lo, hi = _train_range(next((p for p in have if p.overrides.get(panel_key) == pv), have[0]))
    vlines.add(hi + 0.5)
    panels.append((_panel_title(panel_key, pv, lo, hi), curves))
  path = os.path.join(plots_dir, f"by_length_{metric}.png")
  save_line_figure(
    path,
    panels,
    xlabel="source length",
    ylabel=metric.replace("_", " ").replace("bleu", "BLEU").replace("chrf", "chrF"),
    caption=_seeds_caption(tables.get("by_length_runs", {}), by_length, have).replace(
      BAND, "band: 95% bootstrap interval over seeds (none with one seed)"
    ),
    vlines=sorted(vlines) if len(vlines) == 1 else (),
  )
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


def heatmap_section(sweep, rows, tables, plots_dir) -> list[str]:
  by_length = tables.get("by_length", {})
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


def x_section(sweep, rows, tables, plots_dir) -> list[str]:
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
    lines: dict[str, list] = {}
    for r in have:
      lines.setdefault(_label(r, series), []).append(r)
    curves = []
    for label, rs in lines.items():
      rs.sort(key=lambda r: r[x_key])
      low = [r.get(f"{metric}_low") for r in rs]
      high = [r.get(f"{metric}_high") for r in rs]
      band = any(isinstance(v, float) for v in low)
      color_key, style_keys = _curve_keys(series)
      curves.append(
        Curve(
          label,
          [r[x_key] for r in rs],
          [r[metric] for r in rs],
          low if band else None,
          high if band else None,
          color=_label(rs[0], [color_key]) if color_key else None,
          style=label_of(rs[0], style_keys) or None,
        )
      )
    logy = spec.get("logy", {}).get(metric) if isinstance(spec.get("logy"), dict) else False
    n_seeds = sorted({int(r.get("seeds_done") or 1) for r in have})
    path = os.path.join(plots_dir, f"{metric}_vs_{x_key.rsplit('.', 1)[-1]}.png")
    save_line_figure(
      path,
      [("", curves)],
      xlabel=x_key.rsplit(".", 1)[-1],
      ylabel=f"final {metric.replace('_', ' ')}",
      caption=f"mean of {'/'.join(map(str, n_seeds))} seed(s) per point; "
      "band: 95% bootstrap interval over seeds",
      logx=bool(spec.get("logx")),
      logy=bool(logy),
    )
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
      row.update({f"{x_key.rsplit('.', 1)[-1]}={r[x_key]}": _with_ci(r, m) for r in rs})
      table.append(row)
      cond = f"{m} < {solved['below']}" if "below" in solved else f"{m} > {solved['above']}"
      k = sorted({int(r.get("seeds_done") or 1) for r in rs})
      if k != [1]:
        cond += f" (the mean of {'/'.join(map(str, k))} seeds; intervals in the table)"
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


def _with_ci(row: dict, key: str):
  """``mean [low, high] (k seeds)`` where the row has an interval, else the value."""
  lo, hi = row.get(f"{key}_low"), row.get(f"{key}_high")
  if isinstance(lo, float) and isinstance(hi, float):
    return f"{row[key]:.4g} [{lo:.4g}, {hi:.4g}] ({row.get('seeds_done')} seeds)"
  return row[key]


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
  fig = Figure(
    figsize=(MIN_WIDTH_PX / DPI + 0.4, 2.8 * len(xs) + 0.4), dpi=DPI, layout="constrained"
  )
  axes = fig.subplots(len(xs), 2, squeeze=False, sharey="row")
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
  return _text_section(
    "‖∂L/∂h_t‖ through time",
    "From `attention_jax.gradients` (float64; the head reads h_T, so the "
    "readout is included; decay/step: exp of the slope of log‖∂L/∂h_t‖ "
    "against T − t over t = 1…T−1).",
    _md_image(path, plots_dir, "gradient norms"),
    table,
    ("What the gradients show", statements),
  )


def _text_section(
  title: str, intro: str, image: str, table, findings: tuple[str, list[str]] | None = None
) -> list[str]:
  """A report section: heading, what it measures, its figure and table, and
  (``findings``: a sub-heading and its statements) what it shows."""
  out = [f"## {title}\n", intro + "\n", image, markdown_table(table)]
  if findings is not None:
    out += [f"### {findings[0]}\n", "\n".join(findings[1]) + "\n"]
  return out


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
  return _text_section(
    "What the decoder's initial state holds (linear probes)",
    "Softmax-regression probes (`attention_jax.probe`) read the source token "
    "at each position from the decoder's initial state (the encoder–decoder's "
    "context vector; RNNsearch's s_0 = tanh(W_s h←_1)) on held-out sources, "
    "200 per length (80% fit the probes, 20% score them); the control is the "
    "same probes on the model at initialization. Accuracy is the mean over "
    "source positions. Per-position curves and decoder-step maps: each "
    "point's `probe/`.",
    _md_image(path, plots_dir, "probe"),
    table,
    ("What the probes show", statements),
  )


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
  curves, table = [], []
  for p in points:
    rs = [r for r in by_length[p.slug] if r.get("alignment_accuracy") not in (None, "")]
    low, high = _band_of(rs, "alignment_accuracy")
    curves.append(
      _curve(
        p,
        series,
        [r["length"] for r in rs],
        [float(r["alignment_accuracy"]) for r in rs],
        low,
        high,
      )
    )
    lo, hi = _train_range(p)
    row = {"point": _label(p.overrides, series)}
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
  path = os.path.join(plots_dir, "alignment_accuracy.png")
  save_line_figure(
    path,
    [("", curves)],
    xlabel="source length",
    ylabel="alignment accuracy (fraction)",
    caption=_seeds_caption(tables.get("by_length_runs", {}), by_length, points).replace(
      BAND, "band: 95% bootstrap interval over seeds (none with one seed)"
    )
    + "; dashed: each training limit",
    vlines=sorted({_train_range(p)[1] + 0.5 for p in points}),
    ybounds=(0.0, 1.0),
  )
  return _text_section(
    "Attention against the gold alignment",
    "Teacher-forced on the reference: alignment accuracy is the share of "
    "target tokens whose largest attention weight is on their gold source "
    "token, gold mass the mean weight there (Transformer: the last decoder "
    "layer's cross-attention averaged over heads). Weighted by examples per "
    "length.",
    _md_image(path, plots_dir, "alignment"),
    table,
  )


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
    halves = [length_stats(t, metric, lo, hi)["half_at"] for t in _seed_tables(tables, p.slug) if t]
    by_len = {int(r["length"]): r for r in rs}
    row = {"point": _label(p.overrides, series), "seeds": len(halves)}
    for L in sweep.report.get("table_lengths", ()):
      r = by_len.get(L)
      if r is None:
        row[f"L={L}"] = None
        continue
      lo_, hi_ = r.get(f"{metric}_low"), r.get(f"{metric}_high")
      band = f" [{lo_:.2f}, {hi_:.2f}]" if isinstance(lo_, float) and isinstance(hi_, float) else ""
      row[f"L={L}"] = f"{float(r[metric]):.2f}{band} (n={r['examples']})"
    row["falls below half at"] = (
      spread(halves) if len(halves) > 1 else (st["half_at"] or f"never (≤ {st['max_length']})")
    )
    table.append(row)
  return [
    f"## {metric.replace('_', ' ')} by length: where each falls below half\n",
    f"Columns: {metric} at a few source lengths, the mean over seeds [95% bootstrap "
    "interval over seeds and examples] (n: examples per length and seed); the last "
    "column is the first length whose value is below half the point's mean over "
    "short sources (`length_stats`), per seed: median [min–max] over seeds.\n",
    markdown_table(table),
  ]


# Functions named by ``REPORT["extra"]``: (sweep, rows, tables, plots_dir) -> sections.
EXTRA_SECTIONS: dict[str, Callable] = {
  "gradients": gradients_section,
  "probe": probe_section,
  "alignment": alignment_section,
  "position_table": position_table_section,
}


# Extras drawn per seed-run (one curve per seed), not from the seeds' mean.
PER_RUN = ("gradients", "probe")


def make_report_sections(sweep, rows, tables, plots_dir, runs_sweep=None) -> list[str]:
  """Markdown sections (with their PNGs and SVGs written to ``plots_dir``).

  ``sweep``/``rows``/``tables``: the points with their seeds folded
  (``report.group_points``); ``runs_sweep``: the seed-runs, for the extras
  in ``PER_RUN`` (default: ``sweep``)."""
  out = []
  for fn in (by_length_section, heatmap_section, x_section):
    out += fn(sweep, rows, tables, plots_dir)
  for name in sweep.report.get("extra", ()):
    who = runs_sweep if name in PER_RUN and runs_sweep is not None else sweep
    out += EXTRA_SECTIONS[name](who, rows, tables, plots_dir)
  return out
