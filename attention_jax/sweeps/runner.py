"""The ``local`` launcher: a sweep's points as subprocesses of the sweep command, ``--jobs N``
at a time, failures isolated; with what both launchers share: the progress lines,
``sweep.json`` and the report at the end (:mod:`.report`)."""

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
from attention_jax.sweeps import point as point_lib
from attention_jax.sweeps import report
from attention_jax.sweeps.point import LOG_FILE, STOPPING, SWEEP_FILE, Point, Sweep, hms
from attention_jax.sweeps.spec import load_sweep


def gpu_ids() -> list[str]:
  """The GPUs subprocesses see (``CUDA_VISIBLE_DEVICES``, or 0 .. n-1, as far as ``nvidia-smi
  -L`` counts), without importing jax."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if (visible is not None and visible.strip() in ("", "-1")) or not shutil.which("nvidia-smi"):
    return []
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return []
  n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
  ids = [v.strip() for v in (visible or "").split(",") if v.strip()]
  return (ids or [str(i) for i in range(n)])[:n]


class Progress:
  """Prints ``[3/7] slug: done in 41s; elapsed 0:02:10, ETA 0:03:00`` per finished point (with
  the exit code and log when it did not finish); the ETA: the mean point time so far per
  round of ``slots`` points."""

  def __init__(self, total: int, slots: int, print_fn: Callable[[str], None]):
    self.total, self.slots, self.print_fn = total, max(1, slots), print_fn
    self.t0, self.durations = time.time(), []

  def __call__(self, point: Point, st: dict) -> None:
    elapsed = time.time() - self.t0
    self.durations.append(st.get("seconds") or elapsed)
    n, ds = len(self.durations), self.durations
    left = sum(ds) / n * math.ceil((self.total - n) / self.slots) if self.total > n else 0.0
    log = os.path.join(point.workdir, LOG_FILE)
    extra = "" if st["status"] == "done" else f" (exit {st.get('returncode')}; see {log})"
    self.print_fn(
      f"[{n}/{self.total}] {point.slug}: {st['status']}{extra} in "
      f"{st.get('seconds') or 0:.0f}s; elapsed {hms(elapsed)}, ETA {hms(left)}"
    )


def write_sweep_file(sweep: Sweep, workdir: str, launcher: dict | None) -> None:
  """``DIR/sweep.json`` (for ``--status`` and ``--cancel``, which read no config): the points
  and the launcher that runs them (None: the one in the file)."""
  path = os.path.join(workdir, SWEEP_FILE)
  if launcher is None:
    launcher = (point_lib.read_json(path) or {}).get("launcher")
  points = [
    {"slug": p.slug, "overrides": p.overrides, "steps": p.steps, "point": p.point}
    for p in sweep.points
  ]
  info = {"config": sweep.config_path, "arg": sweep.arg, "title": sweep.title}
  point_lib.write_json(path, dict(info, launcher=launcher, seeds=list(sweep.seeds), points=points))


def finish(
  sweep: Sweep, workdir: str, print_fn: Callable[[str], None], results: dict | None = None
) -> list[dict]:
  """Writes the summary, plots and report from ``results`` (slug -> status) of the points
  that ran, or (None) of those finished so far (the others as they stand, or ``not run``)."""
  so_far = results is None
  if so_far:
    results = {
      p.slug: point_lib.read_status(p.workdir) or {"status": "not run"} for p in sweep.points
    }
  statuses = [dict(results[p.slug], slug=p.slug) for p in sweep.points]
  report.write_outputs(sweep, workdir, statuses)
  done, failed, stopped = (
    sum(s["status"] == k for s in statuses) for k in ("done", "failed", "stopped")
  )
  if so_far:
    print_fn(
      f"wrote the summary and report of {done} finished of {len(statuses)} points in {workdir}"
    )
  else:
    print_fn(
      f"wrote {os.path.join(workdir, 'summary.csv')}, summary.md, report.md and plots/; "
      f"{failed} point(s) failed"
      + (f", {stopped} stopped (a re-run resumes them)" if stopped else "")
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
  """Runs every unfinished point (each seed-run is one) ``jobs`` at a time, then writes the
  summary, plots and report; returns one status per point. ``reanalyze``: finished points
  too (training returns at once, the analyses run anew); ``report_only``: run nothing;
  ``max_retries``: runs again of a point that failed for a reason of its own."""
  if max_retries < 0:
    raise SweepError(f"--max_retries must be >= 0, got {max_retries}")
  workdir = os.path.abspath(workdir)
  sweep = load_sweep(spec, workdir, seeds)
  os.makedirs(workdir, exist_ok=True)
  if report_only:
    write_sweep_file(sweep, workdir, None)
    return finish(sweep, workdir, print_fn)
  gpus = len(gpu_ids())
  slots = max(1, min(jobs, gpus) if gpus else jobs)
  write_sweep_file(sweep, workdir, {"name": "local", "jobs": slots})
  todo, results = [], {}
  for p in sweep.points:
    st = point_lib.read_status(p.workdir)
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
  progress = Progress(len(todo), slots, print_fn)

  def work(point: Point) -> dict:
    status = {"status": "interrupted"}
    for attempt in range(max_retries + 1):
      if STOPPING.is_set():  # queued when the sweep was interrupted
        return {"status": "interrupted"}
      if attempt:
        rc = status.get("returncode")
        print_fn(f"{point.slug}: failed (exit {rc}); retry {attempt} of {max_retries}")
      device = devices.get()
      try:
        status = point_lib.run_point(sweep, point, point_lib.point_env(slots, device, gpus))
      finally:
        devices.put(device)
      if status["status"] != "failed":
        break
    return status

  STOPPING.clear()
  previous = None
  if threading.current_thread() is threading.main_thread():  # SIGTERM as Ctrl-C
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=slots)
  try:
    futures = {pool.submit(work, p): p for p in todo}
    for fut in concurrent.futures.as_completed(futures):
      p = futures[fut]
      try:
        st = fut.result()
      except Exception as e:  # noqa: BLE001 - the runner itself failed
        st = {"status": "failed", "returncode": None, "overrides": p.overrides}
        st["log_tail"] = [f"{type(e).__name__}: {e}"]
      results[p.slug] = st
      progress(p, st)
  except KeyboardInterrupt:
    print_fn("interrupted: stopping the running points (a re-run resumes them)")
    point_lib.stop_children()
    pool.shutdown(wait=True, cancel_futures=True)
    raise
  finally:
    pool.shutdown(wait=True)
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  return finish(sweep, workdir, print_fn, results)
