"""A sweep's summary and report from its points' workdirs: ``summary.csv``,
``summary.md``, ``plots/*.png`` and ``report.md`` (the same whichever launcher
ran the points)."""

from __future__ import annotations

import os
from typing import Any

from attention_jax import fileio, writers
from attention_jax.sweeps import plots
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
      "point": p.slug,
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


def write_outputs(sweep: Sweep, workdir: str, statuses: list[dict]) -> None:
  rows, tables = collect(sweep, statuses)
  write_csv(os.path.join(workdir, "summary.csv"), rows)
  fileio.atomic_write_text(
    os.path.join(workdir, "summary.md"), f"# {sweep.title}: summary\n\n" + markdown_table(rows)
  )
  plots_dir = os.path.join(workdir, "plots")
  os.makedirs(plots_dir, exist_ok=True)
  sections = plots.make_report_sections(sweep, rows, tables, plots_dir)
  failed = [(p, s) for p, s in zip(sweep.points, statuses, strict=True) if s["status"] == "failed"]
  not_run = sum(s["status"] == "not run" for s in statuses)
  lines = [
    f"# {sweep.title}\n",
    f"Config `{os.path.relpath(sweep.config_path, sweep.cwd)}`"
    + (f" with arg `{sweep.arg}`" if sweep.arg else "")
    + f"; {len(rows)} points, {len(failed)} failed"
    + (f", {not_run} not run (yet)" if not_run else "")
    + ".\n",
  ]
  if sweep.report.get("description"):
    lines.append(sweep.report["description"].strip() + "\n")
  lines += sections
  lines.append("## All points\n\n" + markdown_table(rows))
  if failed:
    lines.append("## Failed points\n")
    for p, s in failed:
      tail = "\n".join(s.get("log_tail", [])[-10:])
      lines.append(
        f"### {p.slug}\n\nexit code {s.get('returncode')}; "
        f"log `{os.path.join(p.workdir, LOG_FILE)}`:\n\n```\n{tail}\n```\n"
      )
  fileio.atomic_write_text(os.path.join(workdir, "report.md"), "\n".join(lines))
