"""A sweep's summary and report from its points' workdirs, whichever launcher ran them:
``summary.csv`` (a row per seed-run), ``summary_by_point.csv`` (per point the mean over its
seeds and a 95% interval), ``summary.md``, ``plots/*.png`` + ``.svg`` and ``report.md``.
Seeds are pooled here, once: curves are the mean over a point's seeds with a 95% band from
``metrics.seed_bootstrap`` (over seeds and, for exact match, each seed's examples)."""

from __future__ import annotations

import dataclasses
import math
import os

from attention_jax import fileio, writers
from attention_jax import metrics as metrics_lib
from attention_jax.sweeps import figures
from attention_jax.sweeps.point import LOG_FILE, Sweep
from attention_jax.sweeps.spec import BY_LENGTH_CSV, DECAY_CSV, GRADIENTS_CSV, PROBE_CSV
from attention_jax.sweeps.tables import interval_cell, markdown_table, read_csv, write_csv

# The analyses' tables the report reads from each point: name -> CSV in the point's directory.
TABLES = {
  "by_length": BY_LENGTH_CSV,
  "gradients": GRADIENTS_CSV,
  "decay": DECAY_CSV,
  "probe": PROBE_CSV,
}
# Per-example 0/1 metrics of by_length.csv: their bands resample examples too.
BINARY = ("sequence_accuracy",)
_NOT_METRICS = {"returncode", "seconds", "step", "seed", "length", "examples", "in_training_range"}


def _last_eval(workdir: str) -> dict:
  try:
    rows = [r for r in writers.read_metrics(workdir) if r.get("split") == "eval"]
  except (OSError, ValueError):
    return {}
  return rows[-1] if rows else {}


def collect(sweep: Sweep, statuses: list[dict]) -> tuple[list[dict], dict[str, dict]]:
  """Summary rows (one per seed-run) and the analyses' tables (name -> {slug: rows})."""
  rows, tables = [], {name: {} for name in TABLES}
  swept = list(dict.fromkeys(k for p in sweep.points for k in p.overrides))
  for p, st in zip(sweep.points, statuses, strict=True):
    row = {"point": p.point, **{k: p.overrides.get(k) for k in swept}}
    row["status"] = "done" if st["status"] in ("done", "skipped") else st["status"]
    row.update(returncode=st.get("returncode"), seconds=st.get("seconds"))
    rows.append(row)
    if row["status"] != "done":  # failed or not run: no results to report
      continue
    last = _last_eval(p.workdir)
    if isinstance(last.get("baseline_loss"), (int, float)) and last["baseline_loss"] > 0:
      last["loss_ratio"] = last["loss"] / last["baseline_loss"]
    row.update({k: v for k, v in last.items() if k != "split" and not k.endswith("_signature")})
    for name, csv_path in TABLES.items():
      if os.path.exists(path := os.path.join(p.workdir, csv_path)):
        tables[name][p.slug] = read_csv(path)
  return rows, tables


def _number(v) -> float | None:
  return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _interval(values: list[float]) -> tuple[float, float | None, float | None]:
  """Mean over seeds and, with two or more, its 95% bootstrap interval."""
  mean, lo, hi = metrics_lib.seed_bootstrap([[v] for v in values])
  return (mean, lo, hi) if len(values) > 1 else (mean, None, None)


def group_points(sweep: Sweep) -> tuple[Sweep, dict[str, list]]:
  """The sweep as its points (seeds folded: overrides without ``seed``, the first seed-run's
  workdir) and each point's seed-runs."""
  runs: dict[str, list] = {}
  for p in sweep.points:
    runs.setdefault(p.point, []).append(p)
  points = [
    dataclasses.replace(
      rs[0],
      overrides={k: v for k, v in rs[0].overrides.items() if k != "seed" or rs[0].seed is None},
      slug=g,
      seed=None,
    )
    for g, rs in runs.items()
  ]
  return dataclasses.replace(sweep, points=points), runs


def grouped_rows(sweep: Sweep, runs: dict[str, list], rows: list[dict]) -> list[dict]:
  """``summary_by_point.csv``: per point its seeds done and, for every numeric column, the
  mean over them with a 95% interval (``_low``/``_high``, a bootstrap over seeds; empty with
  one seed)."""
  by_run = {p.slug: r for p, r in zip(sweep.points, rows, strict=True)}
  swept = list(dict.fromkeys(k for p in sweep.points for k in p.overrides if k != "seed"))
  out = []
  for g, rs in runs.items():
    mine = [by_run[p.slug] for p in rs]
    done = [r for r in mine if r["status"] == "done"]
    row = {"point": g, **{k: rs[0].overrides.get(k) for k in swept}}
    row["seeds"] = " ".join(str(r["seed"]) for r in done if r.get("seed") is not None)
    row.update(seeds_done=len(done), seed_runs=len(mine))
    row["status"] = "done" if done else mine[0]["status"]
    for k in dict.fromkeys(k for r in done for k in r):
      if k in _NOT_METRICS or k in swept or k in row:
        continue
      if vals := [v for v in (_number(r.get(k)) for r in done) if v is not None]:
        row[k], row[f"{k}_low"], row[f"{k}_high"] = _interval(vals)
    out.append(row)
  return out


def group_by_length(runs: list, by_length: dict[str, list[dict]]) -> list[dict] | None:
  """A point's by-length rows over its seed-runs: per length the mean over seeds of every
  metric with ``_low``/``_high`` 95% bands (exact match: bootstrap over seeds and examples;
  other metrics: over seeds, none with one seed), ``examples`` per seed and ``seeds``."""
  tables = [by_length[p.slug] for p in runs if p.slug in by_length]
  if not tables:
    return None
  out = []
  for L in sorted({int(r["length"]) for t in tables for r in t}):
    at = [r for t in tables for r in t if int(r["length"]) == L]
    n = [int(r["examples"]) for r in at]
    row = {"length": L, "examples": min(n), "examples_total": sum(n), "seeds": len(at)}
    row.update({k: at[0][k] for k in ("in_training_range", "length_unit") if k in at[0]})
    for k in at[0]:
      vals = [_number(r.get(k)) for r in at]
      if k in row or k in _NOT_METRICS or any(v is None for v in vals):
        continue
      if k in BINARY:
        per_seed = [metrics_lib.binary_outcomes(v, m) for v, m in zip(vals, n, strict=True)]
        row[k], row[f"{k}_low"], row[f"{k}_high"] = metrics_lib.seed_bootstrap(per_seed)
      else:
        row[k], row[f"{k}_low"], row[f"{k}_high"] = _interval(vals)
    out.append(row)
  return out


def _with_intervals(rows: list[dict]) -> list[dict]:
  """Rows with each ``k``, ``k_low``, ``k_high`` shown as one ``mean [low, high]`` cell."""
  out = []
  for r in rows:
    row = {}
    for k, v in r.items():
      if k.endswith(("_low", "_high")) and k.rsplit("_", 1)[0] in r:
        continue
      cell = interval_cell(v, r.get(f"{k}_low"), r.get(f"{k}_high"))
      row[k] = cell or (None if isinstance(v, float) and math.isnan(v) else v)
    out.append(row)
  return out


def write_outputs(sweep: Sweep, workdir: str, statuses: list[dict]) -> None:
  rows, tables = collect(sweep, statuses)
  gsweep, runs = group_points(sweep)
  by_point = grouped_rows(sweep, runs, rows)
  write_csv(os.path.join(workdir, "summary.csv"), rows)
  write_csv(os.path.join(workdir, "summary_by_point.csv"), by_point)
  several = len(sweep.seeds) > 1
  pooled = "mean over seeds [95% bootstrap interval over seeds]"
  by_point_md = markdown_table(_with_intervals(by_point))
  with fileio.atomic_open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(f"# {sweep.title}: summary\n\n" + markdown_table(rows))
    f.write(f"\n## By point: {pooled}\n\n{by_point_md}" if several else "")
  by_length = tables["by_length"]
  gtables = dict(tables, by_length_runs={})
  gtables["by_length"] = {
    g: t for g, rs in runs.items() if (t := group_by_length(rs, by_length)) is not None
  }
  for g, rs in runs.items():
    gtables["by_length_runs"][g] = [by_length[p.slug] for p in rs if p.slug in by_length]
  plots_dir = os.path.join(workdir, "plots")
  os.makedirs(plots_dir, exist_ok=True)
  sections = figures.make_report_sections(gsweep, by_point, gtables, plots_dir, runs_sweep=sweep)
  failed = [(p, s) for p, s in zip(sweep.points, statuses, strict=True) if s["status"] == "failed"]
  not_run = sum(s["status"] == "not run" for s in statuses)
  head = f"Config `{os.path.relpath(sweep.config_path, sweep.cwd)}`"
  head += f" with arg `{sweep.arg}`" if sweep.arg else ""
  if several:
    head += f"; {len(runs)} point{'s' * (len(runs) != 1)} × {len(sweep.seeds)} seeds "
    head += f"({', '.join(map(str, sweep.seeds))}) = {len(rows)} seed-runs, {len(failed)} failed"
  else:
    head += f"; {len(rows)} points, {len(failed)} failed"
  head += (f", {not_run} not run (yet)" if not_run else "") + ".\n"
  lines = [f"# {sweep.title}\n", head]
  if sweep.report.get("description"):
    lines.append(sweep.report["description"].strip() + "\n")
  lines += sections
  if several:
    lines.append(f"## All points: {pooled}\n\n{by_point_md}")
  lines.append(("## All seed-runs\n\n" if several else "## All points\n\n") + markdown_table(rows))
  if failed:
    lines.append("## Failed points\n")
  for p, s in failed:
    tail = "\n".join(s.get("log_tail", [])[-10:])
    log = os.path.join(p.workdir, LOG_FILE)
    lines.append(
      f"### {p.slug}\n\nexit code {s.get('returncode')}; log `{log}`:\n\n```\n{tail}\n```\n"
    )
  with fileio.atomic_open(os.path.join(workdir, "report.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
