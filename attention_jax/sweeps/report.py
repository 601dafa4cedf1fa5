"""A sweep's summary and report from its points' workdirs: ``summary.csv``
(one row per seed-run, with a ``seed`` column when the sweep has several),
``summary_by_point.csv`` (per point: the mean over its seeds and a 95%
interval), ``summary.md``, ``plots/*.png`` + ``.svg`` and ``report.md`` (the
same whichever launcher ran the points).

Seeds are pooled here, once: every curve of the report is the mean over a
point's seeds with a 95% band from ``metrics.seed_bootstrap`` (a bootstrap
over seeds and, for exact match, over each seed's examples), and each headline
statistic is given with its spread over seeds (``plots``)."""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from attention_jax import fileio, writers
from attention_jax import metrics as metrics_lib
from attention_jax.sweeps import figures
from attention_jax.sweeps.point import LOG_FILE, Sweep
from attention_jax.sweeps.spec import BY_LENGTH_CSV, DECAY_CSV, GRADIENTS_CSV, PROBE_CSV
from attention_jax.sweeps.tables import markdown_table, read_csv, write_csv


def _last_eval(workdir: str) -> dict[str, Any]:
  try:
    rows = [r for r in writers.read_metrics(workdir) if r.get("split") == "eval"]
  except (OSError, ValueError):
    return {}
  return rows[-1] if rows else {}


def collect(sweep: Sweep, statuses: list[dict]) -> tuple[list[dict], dict[str, dict[str, list]]]:
  """Summary rows (one per point) and each point's analysis tables.

  The second value maps an analysis (``by_length``, ``gradients``) to
  ``{slug: rows}``.
  """
  rows, tables = [], {"by_length": {}, "gradients": {}}
  metric_keys = sweep.report.get("metrics")
  swept = list(dict.fromkeys(k for p in sweep.points for k in p.overrides))
  for p, st in zip(sweep.points, statuses, strict=True):
    row = {
      "point": p.point,
      **{k: p.overrides.get(k) for k in swept},
      "status": "done" if st["status"] in ("done", "skipped") else st["status"],
      "returncode": st.get("returncode"),
      "seconds": st.get("seconds"),
    }
    if row["status"] != "done":  # failed or not run: no results to report
      rows.append(row)
      continue
    last = _last_eval(p.workdir)
    if isinstance(last.get("baseline_loss"), (int, float)) and last["baseline_loss"] > 0:
      last["loss_ratio"] = last["loss"] / last["baseline_loss"]
    for k, v in last.items():
      if (
        k == "split"
        or k.endswith("_signature")
        or (metric_keys and k not in metric_keys and k != "step")
      ):
        continue
      row[k] = v
    bl_path = os.path.join(p.workdir, BY_LENGTH_CSV)
    if os.path.exists(bl_path):
      tables["by_length"][p.slug] = read_csv(bl_path)
    grad_path = os.path.join(p.workdir, GRADIENTS_CSV)
    if os.path.exists(grad_path):
      tables["gradients"][p.slug] = read_csv(grad_path)
    decay_path = os.path.join(p.workdir, DECAY_CSV)
    if os.path.exists(decay_path):
      tables.setdefault("decay", {})[p.slug] = read_csv(decay_path)
    probe_path = os.path.join(p.workdir, PROBE_CSV)
    if os.path.exists(probe_path):
      tables.setdefault("probe", {})[p.slug] = read_csv(probe_path)
    rows.append(row)
  return rows, tables


# Per-example 0/1 metrics of by_length.csv: their bands resample examples too.
BINARY = ("sequence_accuracy",)
_NOT_METRICS = {"returncode", "seconds", "step", "seed", "length", "examples", "in_training_range"}


def _number(v) -> float | None:
  return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _interval(values: list[float]) -> tuple[float, float | None, float | None]:
  """Mean over seeds and, with two or more, its 95% bootstrap interval."""
  mean, lo, hi = metrics_lib.seed_bootstrap([[v] for v in values])
  return (mean, lo, hi) if len(values) > 1 else (mean, None, None)


def group_points(sweep: Sweep) -> tuple[Sweep, dict[str, list]]:
  """The sweep as its points (seeds folded: overrides without ``seed``, the
  first seed-run's workdir) and each point's seed-runs."""
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
  """``summary_by_point.csv``: per point, its seeds done and, for every
  numeric column, the mean over them with a 95% interval (``_low``/``_high``,
  a bootstrap over seeds; empty with one seed)."""
  by_run = {r["_run"]: r for r in rows}
  swept = list(dict.fromkeys(k for p in sweep.points for k in p.overrides if k != "seed"))
  out = []
  for g, rs in runs.items():
    mine = [by_run[p.slug] for p in rs]
    done = [r for r in mine if r["status"] == "done"]
    row = {"point": g, **{k: rs[0].overrides.get(k) for k in swept}}
    row["seeds"] = " ".join(str(r["seed"]) for r in done if r.get("seed") is not None)
    row["seeds_done"] = len(done)
    row["seed_runs"] = len(mine)
    row["status"] = "done" if done else mine[0]["status"]
    keys = list(dict.fromkeys(k for r in done for k in r))
    for k in keys:
      if k in _NOT_METRICS or k in swept or k.startswith("_") or k in row:
        continue
      vals = [v for v in (_number(r.get(k)) for r in done) if v is not None]
      if vals:
        row[k], row[f"{k}_low"], row[f"{k}_high"] = _interval(vals)
    out.append(row)
  return out


def group_by_length(runs: list, by_length: dict[str, list[dict]]) -> list[dict] | None:
  """A point's by-length rows over its seed-runs: per length the mean over
  seeds of every metric, ``_low``/``_high`` 95% bands (exact match: bootstrap
  over seeds and examples; other metrics: over seeds, none with one seed),
  ``examples`` per seed and ``seeds``."""
  tables = [by_length[p.slug] for p in runs if p.slug in by_length]
  if not tables:
    return None
  lengths = sorted({int(r["length"]) for t in tables for r in t})
  out = []
  for L in lengths:
    at = [r for t in tables for r in t if int(r["length"]) == L]
    n = [int(r["examples"]) for r in at]
    row = {
      "length": L,
      "examples": min(n),
      "examples_total": sum(n),
      "seeds": len(at),
      **{k: at[0][k] for k in ("in_training_range", "length_unit") if k in at[0]},
    }
    for k in at[0]:
      if k in row or k in _NOT_METRICS or k == "examples_total":
        continue
      vals = [_number(r.get(k)) for r in at]
      if any(v is None for v in vals):
        continue
      if k in BINARY:
        per_seed = [metrics_lib.binary_outcomes(v, m) for v, m in zip(vals, n, strict=True)]
        row[k], row[f"{k}_low"], row[f"{k}_high"] = metrics_lib.seed_bootstrap(per_seed)
      else:
        row[k], row[f"{k}_low"], row[f"{k}_high"] = _interval(vals)
    out.append(row)
  return out


def write_outputs(sweep: Sweep, workdir: str, statuses: list[dict]) -> None:
  rows, tables = collect(sweep, statuses)
  for p, r in zip(sweep.points, rows, strict=True):
    r["_run"] = p.slug
  gsweep, runs = group_points(sweep)
  by_point = grouped_rows(sweep, runs, rows)
  for r in rows:
    r.pop("_run")
  write_csv(os.path.join(workdir, "summary.csv"), rows)
  write_csv(os.path.join(workdir, "summary_by_point.csv"), by_point)
  several = len(sweep.seeds) > 1
  with fileio.atomic_open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(f"# {sweep.title}: summary\n\n" + markdown_table(rows))
    if several:
      f.write(
        "\n## By point: mean over seeds [95% bootstrap interval over seeds]\n\n"
        + markdown_table(_with_intervals(by_point))
      )
  gtables = dict(tables)
  gtables["by_length"] = {
    g: t for g, rs in runs.items() if (t := group_by_length(rs, tables["by_length"])) is not None
  }
  gtables["by_length_runs"] = {
    g: [tables["by_length"][p.slug] for p in rs if p.slug in tables["by_length"]]
    for g, rs in runs.items()
  }
  plots_dir = os.path.join(workdir, "plots")
  os.makedirs(plots_dir, exist_ok=True)
  sections = figures.make_report_sections(gsweep, by_point, gtables, plots_dir, runs_sweep=sweep)
  failed = [(p, s) for p, s in zip(sweep.points, statuses, strict=True) if s["status"] == "failed"]
  not_run = sum(s["status"] == "not run" for s in statuses)
  lines = [
    f"# {sweep.title}\n",
    f"Config `{os.path.relpath(sweep.config_path, sweep.cwd)}`"
    + (f" with arg `{sweep.arg}`" if sweep.arg else "")
    + (
      f"; {len(runs)} point{'s' * (len(runs) != 1)} × {len(sweep.seeds)} seeds "
      f"({', '.join(map(str, sweep.seeds))})"
      f" = {len(rows)} seed-runs, {len(failed)} failed"
      if several
      else f"; {len(rows)} points, {len(failed)} failed"
    )
    + (f", {not_run} not run (yet)" if not_run else "")
    + ".\n",
  ]
  if sweep.report.get("description"):
    lines.append(sweep.report["description"].strip() + "\n")
  lines += sections
  if several:
    lines.append(
      "## All points: mean over seeds [95% bootstrap interval over seeds]\n\n"
      + markdown_table(_with_intervals(by_point))
    )
  lines.append(("## All seed-runs\n\n" if several else "## All points\n\n") + markdown_table(rows))
  if failed:
    lines.append("## Failed points\n")
    for p, s in failed:
      tail = "\n".join(s.get("log_tail", [])[-10:])
      lines.append(
        f"### {p.slug}\n\nexit code {s.get('returncode')}; "
        f"log `{os.path.join(p.workdir, LOG_FILE)}`:\n\n```\n{tail}\n```\n"
      )
  with fileio.atomic_open(os.path.join(workdir, "report.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))


def _with_intervals(rows: list[dict]) -> list[dict]:
  """Rows with each ``k``, ``k_low``, ``k_high`` shown as one ``mean [low, high]`` cell."""
  out = []
  for r in rows:
    row = {}
    for k, v in r.items():
      if k.endswith(("_low", "_high")) and k.rsplit("_", 1)[0] in r:
        continue
      lo, hi = r.get(f"{k}_low"), r.get(f"{k}_high")
      if isinstance(v, float) and isinstance(lo, float) and isinstance(hi, float):
        row[k] = f"{v:.4g} [{lo:.4g}, {hi:.4g}]"
      elif isinstance(v, float) and math.isnan(v):
        row[k] = None
      else:
        row[k] = v
    out.append(row)
  return out
