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

:func:`run_point` is the one place a point runs, whichever launcher started
it: this module's ``run_sweep`` (the ``local`` launcher) or a Slurm job array
(:mod:`attention_jax.sweeps.slurm`). It keeps the point's ``sweep_status.json``
current: ``running`` (host, pid, start time) while it runs, then ``done``,
``failed`` (a reason of its own: exit code, the command, the last log lines)
or ``stopped`` (stopped from outside — SIGTERM, a preemption, Ctrl-C — after
saving a checkpoint, exit code 75: a re-run resumes it).
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import attention_jax
from attention_jax.errors import EXIT_PREEMPTED
from attention_jax.sweeps import report
from attention_jax.sweeps.spec import (LOG_FILE, POINT_FILE, STATUS_FILE,
                                       SWEEP_FILE, Point, Sweep, load_sweep)

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


def point_env(jobs: int, device: int | None, gpus: int,
              threads: int | None = None) -> dict[str, str]:
  """The environment of one point's subprocess.

  GPU: the point sees one GPU (``CUDA_VISIBLE_DEVICES``) and does not
  preallocate 75% of its memory. CPU: each of the ``jobs`` parallel points
  gets ``cores // jobs`` threads (or ``threads``, when given), so the points
  share the cores instead of each spawning a pool the size of the machine.
  """
  env = dict(os.environ)
  env["PYTHONPATH"] = PACKAGE_PARENT + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  if gpus and device is not None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else None
    env["CUDA_VISIBLE_DEVICES"] = ids[device] if ids else str(device)
  elif jobs > 1 or threads:
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    flags = env.get("XLA_FLAGS", "")
    extra = (f"--xla_cpu_multi_thread_eigen=false "
             f"intra_op_parallelism_threads={threads}")
    env["XLA_FLAGS"] = f"{flags} {extra}".strip()
    env["OMP_NUM_THREADS"] = str(threads)
  return env


def record_failure(point: Point, message: str, job: dict | None = None) -> dict:
  """Records a point that could not run at all (its launcher failed)."""
  os.makedirs(point.workdir, exist_ok=True)
  status = {"status": "failed", "returncode": None, "overrides": point.overrides,
            "finished": time.time(), "log_tail": [f"error: {message}"], **(job or {})}
  write_json(os.path.join(point.workdir, STATUS_FILE), status)
  return status


def read_status(workdir: str) -> dict | None:
  try:
    with open(os.path.join(workdir, STATUS_FILE), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def write_json(path: str, obj) -> None:
  """Writes ``obj`` as JSON, atomically (a reader never sees half a file)."""
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def read_json(path: str) -> dict | None:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _tail(path: str, n: int = 20) -> list[str]:
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return [line.rstrip("\n") for line in f.readlines()[-n:]]
  except OSError:
    return []


_CHILDREN: set = set()          # running point subprocesses
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()


def stop_children(timeout: float = 30) -> None:
  """Stops the running points: SIGTERM (each saves the step in progress and
  exits 75; a re-run resumes it), SIGKILL after ``timeout`` seconds."""
  _STOPPING.set()
  with _CHILDREN_LOCK:
    procs = list(_CHILDREN)
  for proc in procs:
    proc.terminate()
  for proc in procs:
    try:
      proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      proc.kill()


def reset_stop() -> None:
  """Lets point subprocesses start again after :func:`stop_children`."""
  _STOPPING.clear()


def stopping() -> bool:
  return _STOPPING.is_set()


def run_command(cmd: list[str], cwd: str, env: dict[str, str], log) -> int:
  """Runs one of a point's commands, its output appended to ``log``; returns
  its exit code. :func:`stop_children` reaches it while it runs."""
  log.write(f"$ {' '.join(cmd)}\n")
  log.flush()
  proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
  with _CHILDREN_LOCK:
    _CHILDREN.add(proc)
  try:
    return proc.wait()
  finally:
    with _CHILDREN_LOCK:
      _CHILDREN.discard(proc)


def run_point(sweep: Sweep, point: Point, env: dict[str, str],
              job: dict | None = None) -> dict:
  """Trains and analyzes one point in subprocesses; returns its status.

  ``job``: what the launcher knows of the job running it (id, cluster), kept
  in the status. The status file says ``running`` from the start, then
  ``done``, ``failed`` or ``stopped`` (see the module's docstring).
  """
  os.makedirs(point.workdir, exist_ok=True)
  write_json(os.path.join(point.workdir, POINT_FILE),
             {"overrides": point.overrides, "config": sweep.config_path,
              "arg": sweep.arg, "slug": point.slug})
  status_path = os.path.join(point.workdir, STATUS_FILE)
  log_path = os.path.join(point.workdir, LOG_FILE)
  t0 = time.time()
  previous = read_json(status_path) or {}
  status = {"status": "running", "overrides": point.overrides, "started": t0,
            "host": socket.gethostname(), "pid": os.getpid(),
            "attempt": int(previous.get("attempt", 0)) + 1, **(job or {})}
  write_json(status_path, status)
  status.update(status="done", returncode=0)
  status.pop("pid")
  with open(log_path, "a", encoding="utf-8") as log:
    for cmd in (train_command(sweep, point), analysis_command(sweep, point)):
      if cmd is None:
        continue
      if _STOPPING.is_set():
        status.update(status="stopped", returncode=None)
        break
      rc = run_command(cmd, sweep.cwd, env, log)
      if rc != 0 or _STOPPING.is_set():
        stopped = _STOPPING.is_set() or rc == EXIT_PREEMPTED
        status.update(status="stopped" if stopped else "failed", returncode=rc,
                      command=" ".join(cmd))
        break
  status["seconds"] = round(time.time() - t0, 1)
  status["finished"] = time.time()
  if status["status"] != "done":
    status["log_tail"] = _tail(log_path)
  write_json(status_path, status)
  return status


def record_failure(point: Point, message: str, job: dict | None = None) -> dict:
  """Records a point that could not run at all (its launcher failed)."""
  os.makedirs(point.workdir, exist_ok=True)
  status = {"status": "failed", "returncode": None, "overrides": point.overrides,
            "finished": time.time(), "log_tail": [f"error: {message}"], **(job or {})}
  write_json(os.path.join(point.workdir, STATUS_FILE), status)
  return status


def read_status(workdir: str) -> dict | None:
  return read_json(os.path.join(workdir, STATUS_FILE))


def hms(seconds: float) -> str:
  s = int(round(max(seconds, 0)))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def eta(durations: list[float], remaining: int, slots: int) -> float:
  """Seconds left: ``remaining`` points, each taking the mean of
  ``durations``, ``slots`` at a time."""
  if not remaining:
    return 0.0
  if not durations:
    return math.nan
  return sum(durations) / len(durations) * math.ceil(remaining / max(1, slots))


def progress_line(n: int, total: int, point: Point, st: dict, elapsed: float,
                  seconds_left: float) -> str:
  """``[3/7] slug: done in 41s; elapsed 0:02:10, ETA 0:03:00`` (with the exit
  code and the log's path when it did not finish)."""
  extra = "" if st["status"] == "done" else (
      f" (exit {st.get('returncode')}; see {os.path.join(point.workdir, LOG_FILE)})")
  left = "?" if math.isnan(seconds_left) else hms(seconds_left)
  return (f"[{n}/{total}] {point.slug}: {st['status']}{extra} in "
          f"{st.get('seconds') or 0:.0f}s; elapsed {hms(elapsed)}, ETA {left}")


def write_sweep_file(sweep: Sweep, workdir: str, launcher: dict | None) -> None:
  """``DIR/sweep.json``: the points (slug, overrides, steps) and the launcher
  that runs them (kept from the file when ``launcher`` is None), for
  ``--status`` and ``--cancel``, which read no config file."""
  path = os.path.join(workdir, SWEEP_FILE)
  if launcher is None:
    launcher = (read_json(path) or {}).get("launcher")
  write_json(path, {"config": sweep.config_path, "arg": sweep.arg,
                    "title": sweep.title, "launcher": launcher,
                    "points": [{"slug": p.slug, "overrides": p.overrides,
                                "steps": p.steps} for p in sweep.points]})


def report_so_far(sweep: Sweep, workdir: str,
                print_fn: Callable[[str], None] = print) -> list[dict]:
  """Writes the summary and report of the points finished so far (the others
  appear as they stand: ``not run``, ``running``, ``failed``, ``stopped``)."""
  statuses = [dict(read_status(p.workdir) or {"status": "not run"}, slug=p.slug)
              for p in sweep.points]
  report.write_outputs(sweep, workdir, statuses)
  n = sum(s["status"] == "done" for s in statuses)
  print_fn(f"wrote the summary and report of {n} finished of "
           f"{len(statuses)} points in {workdir}")
  return statuses


def finish(sweep: Sweep, workdir: str, results: dict[str, dict],
           print_fn: Callable[[str], None]) -> list[dict]:
  """Writes the summary, plots and report of a sweep whose points ran."""
  statuses = [dict(results[p.slug], slug=p.slug) for p in sweep.points]
  report.write_outputs(sweep, workdir, statuses)
  failed = [s for s in statuses if s["status"] == "failed"]
  stopped = [s for s in statuses if s["status"] == "stopped"]
  print_fn(f"wrote {os.path.join(workdir, 'summary.csv')}, summary.md, "
           f"report.md and plots/; {len(failed)} point(s) failed"
           + (f", {len(stopped)} stopped (a re-run resumes them)" if stopped else ""))
  return statuses


def run_sweep(spec: str, workdir: str, jobs: int = 1,
              print_fn: Callable[[str], None] = print,
              reanalyze: bool = False, report_only: bool = False,
              max_retries: int = 0) -> list[dict]:
  """The ``local`` launcher: runs every unfinished point as subprocesses of
  this process, ``jobs`` at a time, then writes the summary, plots and report.

  ``reanalyze``: finished points run again too — training finds its final
  checkpoint and returns at once, the analyses run anew (after they changed).
  ``report_only``: run nothing; write the summary and report of the points
  that have finished so far (the others appear as ``not run``).
  ``max_retries``: a point that fails for a reason of its own runs again, at
  most this many times.
  Returns one status dict per point (``done``, ``failed``, ``stopped``,
  ``skipped`` or ``not run``).
  """
  workdir = os.path.abspath(workdir)
  sweep = load_sweep(spec, workdir)
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
  print_fn(f"sweep {sweep.title}: {len(sweep.points)} points, "
           f"{len(sweep.points) - len(todo)} already finished, {len(todo)} to run, "
           f"{slots} at a time on {'%d GPU(s)' % gpus if gpus else 'CPU'}")
  devices: queue.Queue = queue.Queue()
  for i in range(slots):
    devices.put(i)

  def work(point: Point) -> dict:
    for attempt in range(max_retries + 1):
      if _STOPPING.is_set():   # queued when the sweep was interrupted
        return {"status": "interrupted"}
      if attempt:
        print_fn(f"{point.slug}: failed (exit {st.get('returncode')}); "
                 f"retry {attempt} of {max_retries}")
      device = devices.get()
      try:
        st = run_point(sweep, point, point_env(slots, device, gpus))
      finally:
        devices.put(device)
      if st["status"] != "failed":
        break
    return st

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
        st = {"status": "failed", "returncode": None, "overrides": p.overrides,
              "log_tail": [f"{type(e).__name__}: {e}"]}
      with lock:
        results[p.slug] = st
        done += 1
        elapsed = time.time() - t0
        durations.append(st.get("seconds") or elapsed)
        print_fn(progress_line(done, len(todo), p, st, elapsed,
                               eta(durations, len(todo) - done, slots)))
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
