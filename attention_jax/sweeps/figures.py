"""The figures and generated statements of a sweep's report, driven by the config's ``REPORT``
dict (its keys: docs/sweeps.md), drawn by :mod:`attention_jax.plots` (PNG and SVG).

The sweep comes with its seeds folded (``report.group_points``): each by-length table is the
mean over a point's seeds with ``_low``/``_high`` bands, and ``tables["by_length_runs"]``
keeps each seed's rows, from which every headline statistic is given as its median and range
over seeds."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from attention_jax import workdir as workdir_lib
from attention_jax.errors import WorkdirError
from attention_jax.plots import DPI, MIN_WIDTH_PX, Curve, save_figure, save_line_figure
from attention_jax.sweeps.tables import bands, interval_cell, markdown_table

BAND = "band: 95% bootstrap interval over seeds and, for exact match, examples"
SEED_BAND = "band: 95% bootstrap interval over seeds (none with one seed)"


def _leaf(key: str) -> str:
  return key.rsplit(".", 1)[-1]


def label_of(overrides, keys) -> str:
  return " ".join(f"{_leaf(k)}={overrides[k]}" for k in keys if k in overrides)


def _label(overrides, keys) -> str:
  return label_of(overrides, keys) or "base"


def _series_keys(sweep, spec) -> list[str]:
  if spec.get("series"):
    return list(spec["series"])
  keys = dict.fromkeys(k for p in sweep.points for k in p.overrides)
  return [k for k in keys if k != spec.get("panels")]


def _row_keys(sweep, spec) -> list[str]:
  """The keys naming a point in a table or a legend shared by panels: series and panel keys."""
  keys, panel_key = _series_keys(sweep, spec), spec.get("panels")
  return keys + ([panel_key] if panel_key and panel_key not in keys else [])


def _grid(n: int):
  cols = min(n, 3)
  width = max(MIN_WIDTH_PX / DPI + 0.4, 4.6 * cols + 1.0)
  fig = Figure(figsize=(width, 3.6 * math.ceil(n / cols)), dpi=DPI, layout="constrained")
  return fig, fig.subplots(math.ceil(n / cols), cols, squeeze=False).ravel()


def _band_of(rows: list[dict], metric: str):
  lo = [r.get(f"{metric}_low") for r in rows]
  if all(v in (None, "") for v in lo):
    return None, None
  return lo, [r.get(f"{metric}_high") for r in rows]


def _curve(overrides, series, x, y, low=None, high=None) -> Curve:
  """A line: its colour from the model (``model.name``, else the first key), style the rest."""
  color = ("model.name" if "model.name" in series else series[0]) if series else None
  style = label_of(overrides, [k for k in series if k != color]) or None
  color = _label(overrides, [color]) if color else None
  return Curve(_label(overrides, series), x, y, low, high, color=color, style=style)


def _length_curve(p, series, rows: list[dict], metric: str) -> Curve:
  """One point's ``metric`` against source length, with its band."""
  lengths, values = [r["length"] for r in rows], [float(r[metric]) for r in rows]
  return _curve(p.overrides, series, lengths, values, *_band_of(rows, metric))


def _seeds_caption(runs: dict[str, list], by_length: dict, points, band: str = BAND) -> str:
  """``mean of 3 seed(s) per point; n = 100 examples per length and seed; band: ...``."""
  n_seeds = sorted({len(runs.get(p.slug, ())) for p in points if p.slug in runs})
  n_ex = sorted({int(r["examples"]) for p in points for r in by_length.get(p.slug, [])})
  seeds = "/".join(map(str, n_seeds)) or "1"
  ex = f"{n_ex[0]}" if len(n_ex) == 1 else (f"{n_ex[0]}–{n_ex[-1]}" if n_ex else "?")
  return f"mean of {seeds} seed(s) per point; n = {ex} examples per length and seed; {band}"


def spread(values: list, none: str = "never") -> str:
  """``median [min–max] over k seeds`` of a per-seed statistic (None or NaN: ``none``, e.g. a
  curve that never falls below half)."""
  values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
  vals = [v for v in values if v is not None]
  if not values:
    return "–"
  if len(values) == 1:
    return none if values[0] is None else f"{values[0]:.3g}"
  if not vals:
    return f"{none} (all {len(values)} seeds)"
  out = f"{float(np.median(vals)):.3g} [{min(vals):.3g}–{max(vals):.3g}] over {len(vals)} seeds"
  never = len(values) - len(vals)
  return out + (f"; {none} in {never}" if never else "")


def _md_image(path: str, plots_dir: str, title: str) -> str:
  return f"![{title}]({os.path.join(os.path.basename(plots_dir), os.path.basename(path))})\n"


def _saved_image(fig, plots_dir: str, name: str, title: str) -> str:
  """Saves ``fig`` as ``plots_dir/name`` and returns its markdown image line."""
  path = os.path.join(plots_dir, name)
  save_figure(fig, path)
  return _md_image(path, plots_dir, title)


def _statements(title: str, statements: list[str]) -> list[str]:
  return [f"### {title}\n", "\n".join(statements) + "\n"]


def length_stats(rows: list[dict], metric: str, train_min: int, train_max: int) -> dict[str, Any]:
  """Short-sentence value, tail values and where the metric halves: ``short``, the mean over
  lengths ≤ max(train_min, 20% of the training limit); ``tail``, over the last 5 trained
  lengths; ``beyond``, past the training limit; ``half_at``, the first length whose metric is
  below half of ``short`` (None if it never is)."""
  by_len = {int(r["length"]): float(r[metric]) for r in rows}
  lengths = sorted(by_len)
  short_cut = max(train_min, int(round(0.2 * train_max)))

  def mean(keep) -> float:
    vals = [by_len[L] for L in lengths if keep(L)]
    return float(np.mean(vals)) if vals else float("nan")

  s = mean(lambda L: L <= short_cut)
  beyond = mean(lambda L: L > train_max)
  return {
    "short": s,
    "short_lengths": f"{min(lengths)}-{short_cut}",
    "tail": mean(lambda L: train_max - 5 < L <= train_max),
    "tail_lengths": f"{max(train_max - 4, 1)}-{train_max}",
    "beyond": beyond,
    "beyond_lengths": f"{train_max + 1}-{max(lengths)}" if lengths[-1] > train_max else "",
    "half_at": next((L for L in lengths if L > short_cut and by_len[L] < 0.5 * s), None),
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
    return f"{_leaf(panel_key)}={value} (trained on lengths {lo}-{hi})"
  return f"trained on lengths {lo}-{hi}"


def _panels(points, panel_key, panel_values, curve) -> tuple[list, list]:
  """A (title, curves) panel per value of ``panel_key`` (``curve(p)`` per point) and the
  dashed line at the longest training length (when every panel shares it)."""
  panels, vlines = [], set()
  for pv in panel_values:
    mine = [p for p in points if p.overrides.get(panel_key) == pv]
    lo, hi = _train_range(mine[0] if mine else points[0])
    vlines.add(hi + 0.5)
    panels.append((_panel_title(panel_key, pv, lo, hi), [curve(p) for p in mine]))
  return panels, sorted(vlines) if len(vlines) == 1 else []


def _seed_tables(tables: dict, slug: str) -> list[list[dict]]:
  """Each seed's own by-length rows of a point (its mean table without per-seed tables)."""
  return tables.get("by_length_runs", {}).get(slug) or [tables.get("by_length", {}).get(slug, [])]


def _halves(st: dict, halves: list) -> str:
  """Where a point falls below half: per seed (median [min–max]), or its one value."""
  return spread(halves) if len(halves) > 1 else (st["half_at"] or f"never (≤ {st['max_length']})")


def by_length_section(sweep, rows, tables, plots_dir) -> list[str]:
  spec, by_length = sweep.report, tables.get("by_length", {})
  if not by_length:
    return []
  metric = spec.get("by_length_metric", "sequence_accuracy")
  series, panel_key = _series_keys(sweep, spec), spec.get("panels")
  points = [p for p in sweep.points if p.slug in by_length]
  panel_values = list(dict.fromkeys(p.overrides.get(panel_key) for p in points))
  panels, vlines = _panels(
    points, panel_key, panel_values, lambda p: _length_curve(p, series, by_length[p.slug], metric)
  )
  table, statements = [], []
  for p in [p for pv in panel_values for p in points if p.overrides.get(panel_key) == pv]:
    r = by_length[p.slug]
    lo, hi = _train_range(p)
    st = length_stats(r, metric, lo, hi)
    per_seed = [length_stats(t, metric, lo, hi) for t in _seed_tables(tables, p.slug) if t]
    halves, shorts = [x["half_at"] for x in per_seed], [x["short"] for x in per_seed]
    n_ex = sorted({int(x["examples"]) for x in r})
    label = _label(p.overrides, _row_keys(sweep, spec))
    row = {"point": label, "seeds": len(per_seed)}
    row["n per length"] = n_ex[0] if len(n_ex) == 1 else f"{n_ex[0]}-{n_ex[-1]}"
    row[f"short ({st['short_lengths']})"] = spread(shorts, "–")
    row.update({"last 5 trained": st["tail"], "beyond training": st["beyond"]})
    row["falls below half at length"] = _halves(st, halves)
    table.append(row)
    who = f"- **{label}** (trained on lengths ≤ {hi}; {len(per_seed)} seed(s), n = "
    who += f"{n_ex[0] if n_ex else '?'} per length)"
    if not st["short"] >= 0.1:
      statements.append(
        f"{who}: did not learn the task ({metric} {spread(shorts, '–')} even on "
        f"lengths {st['short_lengths']})."
      )
    elif all(h is None for h in halves):
      statements.append(
        f"{who}: stays above half its short-sentence {metric} ({spread(shorts)}) up "
        f"to length {st['max_length']} in every seed."
      )
    else:
      where = "inside or beyond, by seed,"
      if all(h is not None and h <= hi for h in halves):
        where = "inside"
      elif all(h is None or h > hi for h in halves):
        where = "beyond"
      statements.append(
        f"{who}: {metric} {spread(shorts)} on short sources falls below half at "
        f"length {spread(halves)} ({where} the training range); "
        f"{st['tail']:.2f} (mean over seeds) on lengths {st['tail_lengths']}."
      )
  path = os.path.join(plots_dir, f"by_length_{metric}.png")
  unit = next((r.get("length_unit") for t in by_length.values() for r in t), None) or "symbols"
  save_line_figure(
    path,
    panels,
    xlabel=f"source length ({unit})",
    ylabel=f"{metric.replace('_', ' ')} (fraction)",
    caption=_seeds_caption(tables.get("by_length_runs", {}), by_length, points)
    + "; dashed: the longest training length",
    vlines=vlines,
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
    *_statements("What the numbers show", statements),
    *_contrast(sweep, points, by_length, metric),
  ]
  for extra in spec.get("by_length_extra", ()):
    out += _by_length_plot_only(sweep, points, tables, extra, series, panel_values, plots_dir)
  return out


def _by_length_plot_only(sweep, points, tables, metric, series, panel_values, plots_dir):
  """A by-length figure of another metric (e.g. BLEU), without statements."""
  by_length = tables.get("by_length", {})
  have = [p for p in points if all(r.get(metric) not in (None, "") for r in by_length[p.slug])]
  if not have:
    return []
  panels, vlines = _panels(
    have,
    sweep.report.get("panels"),
    panel_values,
    lambda p: _length_curve(p, series, by_length[p.slug], metric),
  )
  path = os.path.join(plots_dir, f"by_length_{metric}.png")
  runs = tables.get("by_length_runs", {})
  save_line_figure(
    path,
    panels,
    xlabel="source length",
    ylabel=metric.replace("_", " ").replace("bleu", "BLEU").replace("chrf", "chrF"),
    caption=_seeds_caption(runs, by_length, have, SEED_BAND),
    vlines=vlines,
  )
  note = (
    " (corpus BLEU per length; outputs shorter than 4 tokens have no "
    "4-gram, so their BLEU is 0 by construction)"
    if metric == "bleu"
    else ""
  )
  title = f"## {metric.replace('_', ' ')} against source length{note}\n"
  return [title, _md_image(path, plots_dir, metric)]


def _contrast(sweep, points, by_length, metric) -> list[str]:
  """Compares the values of ``REPORT["contrast"]`` (e.g. model.name) at equal other keys."""
  key = sweep.report.get("contrast")
  groups: dict[tuple, dict] = {}
  for p in points if key else ():
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
    where = " ".join(f"{_leaf(k)}={v}" for k, v in rest)
    parts = ", ".join(f"{v} {st['tail']:.2f}" for v, (st, _) in vals.items())
    hi = next(iter(vals.values()))[1]
    lines.append(
      f"- {where}: {metric} on the longest trained lengths ({max(hi - 4, 1)}-{hi}): {parts}."
    )
  return _statements(f"{key} side by side", lines) if lines else []


def heatmap_section(sweep, rows, tables, plots_dir) -> list[str]:
  by_length, spec = tables.get("by_length", {}), sweep.report.get("heatmap")
  if not spec or not by_length:
    return []
  metric = sweep.report.get("by_length_metric", "sequence_accuracy")
  where, row_key, panel_key = spec.get("where", {}), spec["rows"], sweep.report.get("panels")
  points = [
    p
    for p in sweep.points
    if p.slug in by_length and all(p.overrides.get(k) == v for k, v in where.items())
  ]
  if not points:
    return []
  panel_values = list(dict.fromkeys(p.overrides.get(panel_key) for p in points))
  fig, axes = _grid(len(panel_values))
  what = ", ".join(f"{v}" for v in where.values())
  for ax, pv in zip(axes, panel_values, strict=False):  # the grid may have spare cells
    ps = [p for p in points if p.overrides.get(panel_key) == pv]
    ps.sort(key=lambda p: p.overrides.get(row_key))
    L = max(int(r["length"]) for p in ps for r in by_length[p.slug])
    grid = np.full((len(ps), L), np.nan)
    for i, p in enumerate(ps):
      for r in by_length[p.slug]:
        grid[i, int(r["length"]) - 1] = r[metric]
    extent = (0.5, L + 0.5, len(ps) - 0.5, -0.5)
    im = ax.imshow(grid, aspect="auto", vmin=0, vmax=1, cmap="viridis", extent=extent)
    ax.set_yticks(range(len(ps)), [str(p.overrides.get(row_key)) for p in ps])
    ax.set_ylabel(_leaf(row_key))
    ax.set_xlabel("source length")
    lo, hi = _train_range(ps[0])
    ax.axvline(hi + 0.5, color="white", linestyle="--", linewidth=0.8)
    ax.set_title(
      f"{' '.join(f'{v}' for v in where.values())}, " + _panel_title(panel_key, pv, lo, hi),
      fontsize=9,
    )
    fig.colorbar(im, ax=ax, fraction=0.046)
  for ax in axes[len(panel_values) :]:
    ax.axis("off")
  image = _saved_image(fig, plots_dir, "heatmap.png", "heatmap")
  return [f"## {_leaf(row_key)} × source length ({what})\n", image]


def _by_series(rows: list[dict], series: list[str], metric: str, x_key: str) -> dict:
  """The rows with a value of ``metric``, by series label, each sorted by ``x_key``."""
  groups: dict[str, list] = {}
  for r in rows:
    if isinstance(r.get(metric), (int, float)):
      groups.setdefault(_label(r, series), []).append(r)
  return {label: sorted(rs, key=lambda r: r[x_key]) for label, rs in groups.items()}


def x_section(sweep, rows, tables, plots_dir) -> list[str]:
  """Final metrics against the swept ``REPORT["x"]``, a line per series; which are solved."""
  spec, x_key = sweep.report, sweep.report.get("x")
  if not x_key:
    return []
  x_name = _leaf(x_key)
  series = [k for k in _series_keys(sweep, spec) if k != x_key]
  done = [r for r in rows if r.get("status") == "done"]
  out = []
  for metric in spec.get("x_metrics") or ["sequence_accuracy"]:
    lines = _by_series(done, series, metric, x_key)
    if not lines:
      continue
    curves = [
      _curve(rs[0], series, [r[x_key] for r in rs], [r[metric] for r in rs], *_band_of(rs, metric))
      for rs in lines.values()
    ]
    logy = spec.get("logy", {}).get(metric) if isinstance(spec.get("logy"), dict) else False
    n_seeds = sorted({int(r.get("seeds_done") or 1) for rs in lines.values() for r in rs})
    path = os.path.join(plots_dir, f"{metric}_vs_{x_name}.png")
    save_line_figure(
      path,
      [("", curves)],
      xlabel=x_name,
      ylabel=f"final {metric.replace('_', ' ')}",
      caption=f"mean of {'/'.join(map(str, n_seeds))} seed(s) per point; "
      "band: 95% bootstrap interval over seeds",
      logx=bool(spec.get("logx")),
      logy=bool(logy),
    )
    title = f"## final {metric.replace('_', ' ')} against {x_name}\n"
    out += [title, _md_image(path, plots_dir, metric)]
  if not (solved := spec.get("solved")):
    return out
  m, table, statements = solved["metric"], [], []
  cond = f"{m} < {solved['below']}" if "below" in solved else f"{m} > {solved['above']}"
  for label, rs in _by_series(done, series, m, x_key).items():
    ok = [
      r for r in rs if (r[m] < solved["below"] if "below" in solved else r[m] > solved["above"])
    ]
    row = {"series": label}
    for r in rs:  # mean [low, high] (k seeds) where there is an interval
      cell = interval_cell(r[m], r.get(f"{m}_low"), r.get(f"{m}_high"))
      row[f"{x_name}={r[x_key]}"] = f"{cell} ({r.get('seeds_done')} seeds)" if cell else r[m]
    table.append(row)
    k = sorted({int(r.get("seeds_done") or 1) for r in rs})
    seeds = (
      f" (the mean of {'/'.join(map(str, k))} seeds; intervals in the table)" if k != [1] else ""
    )
    if ok:
      statements.append(
        f"- **{label}** reaches {cond}{seeds} at {x_name} ∈ "
        f"{{{', '.join(str(r[x_key]) for r in ok)}}}; largest solved: {max(r[x_key] for r in ok)}."
      )
    else:
      statements.append(f"- **{label}** reaches {cond}{seeds} at none of {[r[x_key] for r in rs]}.")
  out += [f"### final {m} per point\n", markdown_table(table)]
  return out + _statements("What the numbers show", statements)


def _text_section(title: str, intro: str, image: str, table, findings=None) -> list[str]:
  """A report section: heading, what it measures, its figure and table, what it shows."""
  out = [f"## {title}\n", intro + "\n", image, markdown_table(table)]
  return out + (_statements(*findings) if findings is not None else [])


def gradients_section(sweep, rows, tables, plots_dir) -> list[str]:
  """‖∂L/∂h_t‖ curves (``attention_jax.gradients``): a row per T, init | trained."""
  grads, decay = tables.get("gradients", {}), tables.get("decay", {})
  if not grads:
    return []
  x_key = sweep.report.get("x", "data.length")
  x_name = _leaf(x_key)
  series = [k for k in _series_keys(sweep, sweep.report) if k != x_key]
  points = [p for p in sweep.points if p.slug in grads]
  xs = sorted({p.overrides.get(x_key) for p in points}, key=lambda v: (v is None, v))
  size = (MIN_WIDTH_PX / DPI + 0.4, 2.8 * len(xs) + 0.4)
  fig = Figure(figsize=size, dpi=DPI, layout="constrained")
  axes = fig.subplots(len(xs), 2, squeeze=False, sharey="row")
  table, statements = [], []
  tiny = np.finfo(np.float64).tiny
  for i, x in enumerate(xs):
    for p in [p for p in points if p.overrides.get(x_key) == x]:
      label = _label(p.overrides, series)
      for j, phase in enumerate(("init", "trained")):
        if rs := [r for r in grads[p.slug] if r["phase"] == phase]:
          ys = [max(float(r["grad_h_norm"]), tiny) for r in rs]
          axes[i, j].semilogy([r["t"] for r in rs], ys, label=label)
      d = {r["phase"]: r for r in decay.get(p.slug, [])}
      if "init" not in d or "trained" not in d:
        continue
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
      axes[i, j].set_title(f"{x_name}={x}, {when}", fontsize=9)
      axes[i, j].set(xlabel="step t", ylabel="‖∂L/∂h_t‖")
      axes[i, j].legend(fontsize=6)
  image = _saved_image(fig, plots_dir, "gradient_norms.png", "gradient norms")
  intro = (
    "From `attention_jax.gradients` (float64; the head reads h_T, so the readout is "
    "included; decay/step: exp of the slope of log‖∂L/∂h_t‖ against T − t over t = 1…T−1)."
  )
  findings = ("What the gradients show", statements)
  return _text_section("‖∂L/∂h_t‖ through time", intro, image, table, findings)


def probe_section(sweep, rows, tables, plots_dir) -> list[str]:
  """What linear probes read out of each point's decoder initial state (``probe/
  initial_state.csv``): mean accuracy over source positions against length, per point and
  state, beside the same probes at initialization and chance."""
  probe = tables.get("probe", {})
  if not probe:
    return []
  series = _row_keys(sweep, sweep.report)
  fig, axes = _grid(2)
  table, statements = [], []

  def _mean(rows: list[dict], key: str) -> float:
    return float(np.mean([float(r[key]) for r in rows]))

  for p in [p for p in sweep.points if p.slug in probe]:
    for name in sorted({r["state"] for r in probe[p.slug]}):
      mine = [r for r in probe[p.slug] if r["state"] == name]
      at = {
        L: [r for r in mine if int(r["length"]) == L]
        for L in sorted({int(r["length"]) for r in mine})
      }
      lengths = list(at)

      def curve(key, at=at) -> list[float]:
        return [_mean(rows, key) for rows in at.values()]

      label = _label(p.overrides, series) + ("" if name == "s" else f" {name}")
      label += "" if p.seed is None else f" seed {p.seed}"  # a row per seed-run
      kw = {"marker": ".", "markersize": 3, "label": label}
      (line,) = axes[0].plot(lengths, curve("accuracy"), **kw)
      c = line.get_color()
      axes[0].plot(lengths, curve("control_accuracy"), color=c, linestyle=":", linewidth=0.8)
      axes[1].plot(lengths, curve("selectivity"), color=c, **kw)
      row, acc = {"point": label}, dict(zip(lengths, curve("accuracy"), strict=True))
      for lo, hi in bands(lengths):
        row[f"lengths {lo}-{hi}"] = float(np.mean([acc[L] for L in lengths if lo <= L <= hi]))
      lo, hi = bands(lengths)[-1]
      longest = [r for r in mine if lo <= int(r["length"]) <= hi]
      first = _mean([r for r in longest if int(r["position"]) == 1], "accuracy")
      last = _mean([r for r in longest if int(r["position"]) == int(r["length"])], "accuracy")
      control, chance = _mean(longest, "control_accuracy"), _mean(mine, "chance")
      row[f"first token ({lo}-{hi})"], row[f"last token ({lo}-{hi})"] = first, last
      row.update({f"at init ({lo}-{hi})": control, "chance": chance})
      table.append(row)
      statements.append(
        f"- **{label}**: on sources of {lo}–{hi} tokens the initial state gives "
        f"back {row[f'lengths {lo}-{hi}']:.2f} of the tokens (the same probes at "
        f"initialization {control:.2f}, chance {chance:.2f}); the first token "
        f"{first:.2f}, the last {last:.2f}."
      )
  ylabels = ("mean probe accuracy (dotted: at init)", "selectivity (trained - at init)")
  for ax, ylabel in zip(axes, ylabels, strict=True):
    ax.set(xlabel="source length", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  axes[0].set_ylim(-0.02, 1.02)
  image = _saved_image(fig, plots_dir, "probe_initial_state.png", "probe")
  intro = (
    "Softmax-regression probes (`attention_jax.probe`) read the source token at each "
    "position from the decoder's initial state (the encoder–decoder's context vector; "
    "RNNsearch's s_0 = tanh(W_s h←_1)) on held-out sources, 200 per length (80% fit the "
    "probes, 20% score them); the control is the same probes on the model at "
    "initialization. Accuracy is the mean over source positions. Per-position curves and "
    "decoder-step maps: each point's `probe/`."
  )
  title = "What the decoder's initial state holds (linear probes)"
  return _text_section(title, intro, image, table, ("What the probes show", statements))


def alignment_section(sweep, rows, tables, plots_dir) -> list[str]:
  """The attention's alignment accuracy and gold mass (teacher-forced) by source length."""
  by_length = tables.get("by_length", {})
  aligned = {
    slug: [r for r in rs if r.get("alignment_accuracy") not in (None, "")]
    for slug, rs in by_length.items()
  }
  points = [p for p in sweep.points if aligned.get(p.slug)]
  if not points:
    return []
  series = _row_keys(sweep, sweep.report)
  curves, table = [], []
  for p in points:
    rs = aligned[p.slug]
    curves.append(_length_curve(p, series, rs, "alignment_accuracy"))
    lo, hi = _train_range(p)
    row = {"point": _label(p.overrides, series)}
    inside = [r for r in rs if lo <= int(r["length"]) <= hi]
    beyond = [r for r in rs if int(r["length"]) > hi]
    for name, sel in ((f"trained lengths {lo}-{hi}", inside), (f"beyond {hi}", beyond)):
      w = [float(r["examples"]) for r in sel]
      for metric in ("alignment_accuracy", "gold_attention_mass"):
        values = [float(r[metric]) for r in sel]
        row[f"{metric} ({name})"] = float(np.average(values, weights=w)) if sel else None
    table.append(row)
  path = os.path.join(plots_dir, "alignment_accuracy.png")
  caption = _seeds_caption(tables.get("by_length_runs", {}), by_length, points, SEED_BAND)
  save_line_figure(
    path,
    [("", curves)],
    xlabel="source length",
    ylabel="alignment accuracy (fraction)",
    caption=caption + "; dashed: each training limit",
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
  """Exact match by source length, a row per point, and the first length where each falls
  below half of its short-sentence value (the length extrapolation of configs/positions.py)."""
  by_length = tables.get("by_length", {})
  if not by_length:
    return []
  metric = sweep.report.get("by_length_metric", "sequence_accuracy")
  series = _row_keys(sweep, sweep.report)
  table = []
  for p in [p for p in sweep.points if p.slug in by_length]:
    rs = by_length[p.slug]
    lo, hi = _train_range(p)
    halves = [length_stats(t, metric, lo, hi)["half_at"] for t in _seed_tables(tables, p.slug) if t]
    by_len = {int(r["length"]): r for r in rs}
    row = {"point": _label(p.overrides, series), "seeds": len(halves)}
    for L in sweep.report.get("table_lengths", ()):
      if (r := by_len.get(L)) is None:
        row[f"L={L}"] = None
        continue
      lo_, hi_ = r.get(f"{metric}_low"), r.get(f"{metric}_high")
      band = f" [{lo_:.2f}, {hi_:.2f}]" if isinstance(lo_, float) and isinstance(hi_, float) else ""
      row[f"L={L}"] = f"{float(r[metric]):.2f}{band} (n={r['examples']})"
    row["falls below half at"] = _halves(length_stats(rs, metric, lo, hi), halves)
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
EXTRA_SECTIONS = {
  "gradients": gradients_section,
  "probe": probe_section,
  "alignment": alignment_section,
  "position_table": position_table_section,
}
PER_RUN = ("gradients", "probe")  # extras drawn per seed-run, not from the seeds' mean


def make_report_sections(sweep, rows, tables, plots_dir, runs_sweep=None) -> list[str]:
  """The report's Markdown sections (figures in ``plots_dir``); ``runs_sweep``: the seed-runs."""
  out = []
  for fn in (by_length_section, heatmap_section, x_section):
    out += fn(sweep, rows, tables, plots_dir)
  for name in sweep.report.get("extra", ()):
    who = runs_sweep if name in PER_RUN and runs_sweep is not None else sweep
    out += EXTRA_SECTIONS[name](who, rows, tables, plots_dir)
  return out
