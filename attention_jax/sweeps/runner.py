"""The ``local`` launcher: a sweep's points as subprocesses of the sweep
command, failures isolated.

``run_sweep`` runs every point (:func:`attention_jax.sweeps.point.run_point`:
``python -m experiments.run`` in its own subprocess and workdir
``DIR/<slug>/``, then any analyses), ``jobs`` at a time. A point that
finished (``sweep_status.json`` says ``done``) is skipped on re-run; a failed
one is recorded with its exit code and the last lines of its log, and the
rest go on. At the end ``DIR/summary.csv``, ``DIR/summary.md``,
``DIR/plots/*.png`` and ``DIR/report.md`` are (re)written from every point's
workdir (:mod:`attention_jax.sweeps.report`). The progress lines, the
summary and the report are shared with the ``slurm`` launcher
(:mod:`attention_jax.sweeps.slurm`).
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from attention_jax.errors import SweepError
from attention_jax.sweeps import report
from attention_jax.sweeps.point import (
  LOG_FILE,
  SWEEP_FILE,
  Point,
  Sweep,
  hms,
  point_env,
  read_json,
  read_status,
  reset_stop,
  run_point,
  stop_children,
  stopping,
  write_json,
)
from attention_jax.sweeps.spec import load_sweep


def gpu_count() -> int:
  """GPUs visible to subprocesses (``nvidia-smi -L``), without importing jax."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None and visible.strip() in ("", "-1"):
    return 0
  if shutil.which("nvidia-smi") is None:
    return 0
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return 0
  n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
  if visible:
    n = min(n, len([v for v in visible.split(",") if v.strip()]))
  return n


def eta(durations: list[float], remaining: int, slots: int) -> float:
  """Seconds left: ``remaining`` points, each taking the mean of
  ``durations``, ``slots`` at a time."""
  if not remaining:
    return 0.0
  if not durations:
    return math.nan
  return sum(durations) / len(durations) * math.ceil(remaining / max(1, slots))


def progress_line(
  n: int, total: int, point: Point, st: dict, elapsed: float, seconds_left: float
) -> str:
  """``[3/7] slug: done in 41s; elapsed 0:02:10, ETA 0:03:00`` (with the exit
  code and the log's path when it did not finish)."""
  extra = (
    ""
    if st["status"] == "done"
    else (f" (exit {st.get('returncode')}; see {os.path.join(point.workdir, LOG_FILE)})")
  )
  left = "?" if math.isnan(seconds_left) else hms(seconds_left)
  return (
    f"[{n}/{total}] {point.slug}: {st['status']}{extra} in "
    f"{st.get('seconds') or 0:.0f}s; elapsed {hms(elapsed)}, ETA {left}"
  )


def write_sweep_file(sweep: Sweep, workdir: str, launcher: dict | None) -> None:
  """``DIR/sweep.json``: the points (slug, overrides, steps) and the launcher
  that runs them (kept from the file when ``launcher`` is None), for
  ``--status`` and ``--cancel``, which read no config file."""
  path = os.path.join(workdir, SWEEP_FILE)
  if launcher is None:
    launcher = (read_json(path) or {}).get("launcher")
  write_json(
    path,
    {
      "config": sweep.config_path,
      "arg": sweep.arg,
      "title": sweep.title,
      "launcher": launcher,
      "seeds": list(sweep.seeds),
      "points": [
        {"slug": p.slug, "overrides": p.overrides, "steps": p.steps, "point": p.point}
        for p in sweep.points
      ],
    },
  )


def report_so_far(
  sweep: Sweep, workdir: str, print_fn: Callable[[str], None] = print
) -> list[dict]:
  """Writes the summary and report of the points finished so far (the others
  appear as they stand: ``not run``, ``running``, ``failed``, ``stopped``)."""
  statuses = [
    dict(read_status(p.workdir) or {"status": "not run"}, slug=p.slug) for p in sweep.points
  ]
  report.write_outputs(sweep, workdir, statuses)
  n = sum(s["status"] == "done" for s in statuses)
  print_fn(f"wrote the summary and report of {n} finished of {len(statuses)} points in {workdir}")
  return statuses


def finish(
  sweep: Sweep, workdir: str, results: dict[str, dict], print_fn: Callable[[str], None]
) -> list[dict]:
  """Writes the summary, plots and report of a sweep whose points ran."""
  statuses = [dict(results[p.slug], slug=p.slug) for p in sweep.points]
  report.write_outputs(sweep, workdir, statuses)
  failed = [s for s in statuses if s["status"] == "failed"]
  stopped = [s for s in statuses if s["status"] == "stopped"]
  print_fn(
    f"wrote {os.path.join(workdir, 'summary.csv')}, summary.md, "
    f"report.md and plots/; {len(failed)} point(s) failed"
    + (f", {len(stopped)} stopped (a re-run resumes them)" if stopped else "")
  )
  return statuses


def run_sweep(
  spec: str,
  workdir: str,
  jobs: int = 1,
  print_fn: Callable[[str], None] = print,
  reanalyze: bool = False,
  report_only: bool = False,
  max_retries: int = 0,
  seeds: int | None = None,
) -> list[dict]:
  """The ``local`` launcher: runs every unfinished point as subprocesses of
  this process, ``jobs`` at a time, then writes the summary, plots and report.

  ``reanalyze``: finished points run again too — training finds its final
  checkpoint and returns at once, the analyses run anew (after they changed).
  ``report_only``: run nothing; write the summary and report of the points
  that have finished so far (the others appear as ``not run``).
  ``max_retries``: a point that fails for a reason of its own runs again, at
  most this many times.
  ``seeds``: ``--seeds N`` (default: the config's ``SEEDS``, else one); each
  seed-run is a point of its own here (skipped when done, retried, resumed).
  Returns one status dict per point (``done``, ``failed``, ``stopped``,
  ``skipped`` or ``not run``).
  """
  if max_retries < 0:
    raise SweepError(f"--max_retries must be >= 0, got {max_retries}")
  workdir = os.path.abspath(workdir)
  sweep = load_sweep(spec, workdir, seeds)
  os.makedirs(workdir, exist_ok=True)
  if report_only:
    write_sweep_file(sweep, workdir, None)
    return report_so_far(sweep, workdir, print_fn)
  gpus = gpu_count()
  slots = min(jobs, gpus) if gpus else jobs
  slots = max(1, slots)
  write_sweep_file(sweep, workdir, {"name": "local", "jobs": slots})
  todo, results = [], {}
  for p in sweep.points:
    st = read_status(p.workdir)
    if st and st.get("status") == "done" and not reanalyze:
      results[p.slug] = dict(st, status="skipped")
    else:
      todo.append(p)
  groups = len({p.point for p in sweep.points})
  runs = (
    f"{groups} point{'s' * (groups != 1)} × {len(sweep.seeds)} seeds = {len(sweep.points)} runs"
    if len(sweep.points) != groups
    else f"{len(sweep.points)} points"
  )
  print_fn(
    f"sweep {sweep.title}: {runs}, "
    f"{len(sweep.points) - len(todo)} already finished, {len(todo)} to run, "
    f"{slots} at a time on {f'{gpus} GPU(s)' if gpus else 'CPU'}"
  )
  devices: queue.Queue = queue.Queue()
  for i in range(slots):
    devices.put(i)

  def work(point: Point) -> dict:
    status = {"status": "interrupted"}
    for attempt in range(max_retries + 1):
      if stopping():  # queued when the sweep was interrupted
        return {"status": "interrupted"}
      if attempt:
        print_fn(
          f"{point.slug}: failed (exit {status.get('returncode')}); "
          f"retry {attempt} of {max_retries}"
        )
      device = devices.get()
      try:
        status = run_point(sweep, point, point_env(slots, device, gpus))
      finally:
        devices.put(device)
      if status["status"] != "failed":
        break
    return status

  t0, done, durations = time.time(), 0, []
  lock = threading.Lock()
  reset_stop()
  previous = None
  if threading.current_thread() is threading.main_thread():

    def on_term(signum, frame):
      raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=slots)
  try:
    futures = {pool.submit(work, p): p for p in todo}
    for fut in concurrent.futures.as_completed(futures):
      p = futures[fut]
      try:
        st = fut.result()
      except Exception as e:  # noqa: BLE001 - the runner itself failed
        st = {
          "status": "failed",
          "returncode": None,
          "overrides": p.overrides,
          "log_tail": [f"{type(e).__name__}: {e}"],
        }
      with lock:
        results[p.slug] = st
        done += 1
        elapsed = time.time() - t0
        durations.append(st.get("seconds") or elapsed)
        print_fn(
          progress_line(done, len(todo), p, st, elapsed, eta(durations, len(todo) - done, slots))
        )
  except KeyboardInterrupt:
    print_fn("interrupted: stopping the running points (a re-run resumes them)")
    stop_children()
    pool.shutdown(wait=True, cancel_futures=True)
    raise
  finally:
    pool.shutdown(wait=True)
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  return finish(sweep, workdir, results, print_fn)
