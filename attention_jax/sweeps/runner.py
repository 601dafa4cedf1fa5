"""Running a sweep's points as local subprocesses, failures isolated.

``run_sweep`` runs every point as ``python -m experiments.run`` in its own
subprocess and workdir ``DIR/<slug>/``, then any analyses in a second
subprocess (``python -m experiments.analyze_point``). A point that finished
(``sweep_status.json`` says ``done``) is skipped on re-run; a failed one is
recorded with its exit code and the last lines of its log, and the rest go on.
At the end ``DIR/summary.csv``, ``DIR/summary.md``, ``DIR/plots/*.png`` and
``DIR/report.md`` are (re)written from every point's workdir
(:mod:`attention_jax.sweeps.report`).

The points run as ``python -m`` of the same interpreter, with the directory
that holds the ``attention_jax`` package on ``PYTHONPATH`` (a clone or an
installed package alike) and the sweep command's working directory as theirs
(relative data paths mean what they meant there).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import attention_jax
from attention_jax.sweeps import report
from attention_jax.sweeps.spec import (LOG_FILE, POINT_FILE, STATUS_FILE, Point,
                                       Sweep, load_sweep)

# The directory holding the attention_jax (and experiments) packages.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(
    attention_jax.__file__)))


def _cli_value(value: Any) -> str:
  return repr(value) if isinstance(value, float) else str(value)


def train_command(sweep: Sweep, point: Point) -> list[str]:
  spec = sweep.config_path + (f":{sweep.arg}" if sweep.arg is not None else "")
  cmd = [sys.executable, "-m", "experiments.run", f"--config={spec}",
         f"--workdir={point.workdir}"]
  cmd += [f"--config.{k}={_cli_value(v)}" for k, v in sorted(point.overrides.items())]
  return cmd


def analysis_command(sweep: Sweep, point: Point) -> list[str] | None:
  if not sweep.analyses:
    return None
  return [sys.executable, "-m", "experiments.analyze_point",
          f"--workdir={point.workdir}", f"--analyses={','.join(sweep.analyses)}"]


def gpu_count() -> int:
  """GPUs visible to subprocesses (``nvidia-smi -L``), without importing jax."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None and visible.strip() in ("", "-1"):
    return 0
  if shutil.which("nvidia-smi") is None:
    return 0
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                         timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return 0
  n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
  if visible:
    n = min(n, len([v for v in visible.split(",") if v.strip()]))
  return n


def point_env(jobs: int, device: int | None, gpus: int) -> dict[str, str]:
  """The environment of one point's subprocess.

  GPU: the point sees one GPU (``CUDA_VISIBLE_DEVICES``) and does not
  preallocate 75% of its memory. CPU: each of the ``jobs`` parallel points
  gets ``cores // jobs`` threads, so the points share the cores instead of
  each spawning a pool the size of the machine.
  """
  env = dict(os.environ)
  env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  if gpus and device is not None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else None
    env["CUDA_VISIBLE_DEVICES"] = ids[device] if ids else str(device)
  elif jobs > 1:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    flags = env.get("XLA_FLAGS", "")
    extra = (f"--xla_cpu_multi_thread_eigen=false "
             f"intra_op_parallelism_threads={threads}")
    env["XLA_FLAGS"] = f"{flags} {extra}".strip()
    env["OMP_NUM_THREADS"] = str(threads)
  return env


def read_status(workdir: str) -> dict | None:
  try:
    with open(os.path.join(workdir, STATUS_FILE), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _tail(path: str, n: int = 20) -> list[str]:
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return [line.rstrip("\n") for line in f.readlines()[-n:]]
  except OSError:
    return []


_CHILDREN: set = set()          # running point subprocesses
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _stop_children() -> None:
  """Terminates the running points (they resume from their checkpoints)."""
  _STOPPING.set()
  with _CHILDREN_LOCK:
    procs = list(_CHILDREN)
  for proc in procs:
    proc.terminate()
  for proc in procs:
    try:
      proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      proc.kill()


def run_point(sweep: Sweep, point: Point, env: dict[str, str]) -> dict:
  """Trains and analyzes one point in subprocesses; returns its status."""
  os.makedirs(point.workdir, exist_ok=True)
  _write_json(os.path.join(point.workdir, POINT_FILE),
              {"overrides": point.overrides, "config": sweep.config_path,
               "arg": sweep.arg, "slug": point.slug})
  log_path = os.path.join(point.workdir, LOG_FILE)
  t0 = time.time()
  status = {"status": "done", "returncode": 0, "overrides": point.overrides}
  with open(log_path, "a", encoding="utf-8") as log:
    for cmd in (train_command(sweep, point), analysis_command(sweep, point)):
      if cmd is None:
        continue
      if _STOPPING.is_set():
        return {"status": "interrupted"}
      log.write(f"$ {' '.join(cmd)}\n")
      log.flush()
      proc = subprocess.Popen(cmd, cwd=sweep.cwd, env=env, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
      with _CHILDREN_LOCK:
        _CHILDREN.add(proc)
      try:
        rc = proc.wait()
      finally:
        with _CHILDREN_LOCK:
          _CHILDREN.discard(proc)
      if _STOPPING.is_set():
        return {"status": "interrupted"}
      if rc != 0:
        status.update(status="failed", returncode=rc, command=" ".join(cmd))
        break
  status["seconds"] = round(time.time() - t0, 1)
  if status["status"] == "failed":
    status["log_tail"] = _tail(log_path)
  _write_json(os.path.join(point.workdir, STATUS_FILE), status)
  return status


def _hms(seconds: float) -> str:
  s = int(round(max(seconds, 0)))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_sweep(spec: str, workdir: str, jobs: int = 1,
              print_fn: Callable[[str], None] = print,
              reanalyze: bool = False, report_only: bool = False) -> list[dict]:
  """Runs every unfinished point, then writes the summary, plots and report.

  ``reanalyze``: finished points run again too — training finds its final
  checkpoint and returns at once, the analyses run anew (after they changed).
  ``report_only``: run nothing; write the summary and report of the points
  that have finished so far (the others appear as ``not run``).
  Returns one status dict per point (``done``, ``failed``, ``skipped`` or
  ``not run``).
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  sweep = load_sweep(spec, workdir)
  _write_json(os.path.join(workdir, "sweep.json"),
              {"config": sweep.config_path, "arg": sweep.arg,
               "points": [{"slug": p.slug, "overrides": p.overrides}
                          for p in sweep.points]})
  if report_only:
    statuses = [dict(read_status(p.workdir) or {"status": "not run"}, slug=p.slug)
                for p in sweep.points]
    report.write_outputs(sweep, workdir, statuses)
    n = sum(s["status"] == "done" for s in statuses)
    print_fn(f"wrote the summary and report of {n} finished of "
             f"{len(statuses)} points in {workdir}")
    return statuses
  gpus = gpu_count()
  slots = min(jobs, gpus) if gpus else jobs
  slots = max(1, slots)
  todo, results = [], {}
  for p in sweep.points:
    st = read_status(p.workdir)
    if st and st.get("status") == "done" and not reanalyze:
      results[p.slug] = dict(st, status="skipped")
    else:
      todo.append(p)
  print_fn(f"sweep {sweep.title}: {len(sweep.points)} points, "
           f"{len(sweep.points) - len(todo)} already finished, {len(todo)} to run, "
           f"{slots} at a time on {'%d GPU(s)' % gpus if gpus else 'CPU'}")
  devices: queue.Queue = queue.Queue()
  for i in range(slots):
    devices.put(i)

  def work(point: Point) -> dict:
    if _STOPPING.is_set():   # queued when the sweep was interrupted
      return {"status": "interrupted"}
    device = devices.get()
    try:
      return run_point(sweep, point, point_env(slots, device, gpus))
    finally:
      devices.put(device)

  t0, done, durations = time.time(), 0, []
  lock = threading.Lock()
  _STOPPING.clear()
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
        st = {"status": "failed", "returncode": None, "overrides": p.overrides,
              "log_tail": [f"{type(e).__name__}: {e}"]}
      with lock:
        results[p.slug] = st
        done += 1
        elapsed = time.time() - t0
        durations.append(st.get("seconds") or elapsed)
        # points still to start or running, each taking the mean duration so far,
        # ``slots`` at a time
        eta = sum(durations) / len(durations) * math.ceil((len(todo) - done) / slots)
        extra = "" if st["status"] == "done" else (
            f" (exit {st.get('returncode')}; see {os.path.join(p.workdir, LOG_FILE)})")
        print_fn(f"[{done}/{len(todo)}] {p.slug}: {st['status']}{extra} in "
                 f"{st.get('seconds', 0):.0f}s; elapsed {_hms(elapsed)}, "
                 f"ETA {_hms(eta)}")
  except KeyboardInterrupt:
    print_fn("interrupted: stopping the running points (a re-run resumes them)")
    _stop_children()
    pool.shutdown(wait=True, cancel_futures=True)
    raise
  finally:
    pool.shutdown(wait=True)
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  statuses = [dict(results[p.slug], slug=p.slug) for p in sweep.points]
  report.write_outputs(sweep, workdir, statuses)
  failed = [s for s in statuses if s["status"] == "failed"]
  print_fn(f"wrote {os.path.join(workdir, 'summary.csv')}, summary.md, "
           f"report.md and plots/; {len(failed)} point(s) failed")
  return statuses
