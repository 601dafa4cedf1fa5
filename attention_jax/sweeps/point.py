"""One point of a sweep: its files, commands, environment and run.

:func:`run_point` is the one place a point runs, whichever launcher started it: ``python -m
experiments.run`` in ``DIR/<slug>/``, then the analyses, each a subprocess in the sweep
command's working directory, keeping ``sweep_status.json`` current (``running``, then
``done``, ``failed``: a reason of its own, or ``stopped``: from outside, exit 75, a re-run
resumes it). Imports neither jax nor a config, so that a Slurm task starts at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import attention_jax
from attention_jax import fileio
from attention_jax.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED

# A point's directory holds its run (a workdir) and these sweep files.
STATUS_FILE = "sweep_status.json"  # running | done | failed | stopped, exit code, log tail
POINT_FILE = "sweep_point.json"  # the point's overrides and config
LOG_FILE = "sweep.log"  # the point's subprocesses' output
JOB_FILE = "sweep_job.json"  # its latest scheduler job (--launcher slurm)
SWEEP_FILE = "sweep.json"  # in the sweep directory: its points, launcher

# The directory holding the attention_jax (and experiments) packages.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(attention_jax.__file__)))


@dataclasses.dataclass
class Point:
  overrides: dict[str, Any]
  slug: str
  workdir: str
  steps: int | None = None  # train.steps of its config
  group: str | None = None  # the point's slug without its seed (one per seed-run)
  seed: int | None = None  # the seed of this seed-run (None: the config's own)

  @property
  def point(self) -> str:
    """The slug of the point this seed-run belongs to."""
    return self.group or self.slug


@dataclasses.dataclass
class Sweep:
  config_path: str  # absolute path of the config file
  arg: str | None
  points: list[Point]
  analyses: tuple[str, ...]
  report: dict[str, Any]
  title: str
  cwd: str = dataclasses.field(default_factory=os.getcwd)  # where it was started
  resources: dict[str, Any] = dataclasses.field(default_factory=dict)  # SLURM
  seeds: tuple[int, ...] = ()  # the seeds each point runs with (() or one: the config's)


def train_command(sweep: Sweep, point: Point) -> list[str]:
  spec = sweep.config_path + (f":{sweep.arg}" if sweep.arg is not None else "")
  cmd = [sys.executable, "-m", "experiments.run", f"--config={spec}", f"--workdir={point.workdir}"]
  return cmd + [
    f"--config.{k}={repr(v) if isinstance(v, float) else v}"
    for k, v in sorted(point.overrides.items())
  ]


def analysis_command(sweep: Sweep, point: Point) -> list[str] | None:
  names = ",".join(sweep.analyses)
  module, workdir = "experiments.analyze_point", f"--workdir={point.workdir}"
  return [sys.executable, "-m", module, workdir, f"--analyses={names}"] if names else None


def point_env(
  jobs: int, device: int | None, gpus: int, threads: int | None = None
) -> dict[str, str]:
  """The environment of one point's subprocess. GPU: it sees its GPU ``device`` and does not
  preallocate. CPU: each of ``jobs`` parallel points gets ``cores // jobs`` threads (or
  ``threads``), so that they share the cores instead of each sizing a pool to the machine."""
  env = dict(os.environ)
  env["PYTHONPATH"] = PACKAGE_PARENT + (
    os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
  )
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  if gpus and device is not None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else None
    env["CUDA_VISIBLE_DEVICES"] = ids[device] if ids else str(device)
  elif jobs > 1 or threads:
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    flags = env.get("XLA_FLAGS", "")
    extra = f"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads={threads}"
    env["XLA_FLAGS"] = f"{flags} {extra}".strip()
    env["OMP_NUM_THREADS"] = str(threads)
  return env


def write_json(path: str, obj) -> None:
  fileio.atomic_write_json(path, obj, indent=2, sort_keys=True)


def read_json(path: str) -> dict | None:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


_CHILDREN: set = set()  # running point subprocesses
_CHILDREN_LOCK = threading.Lock()
STOPPING = threading.Event()  # set by stop_children: no point subprocess starts (clear: again)


def stop_children(timeout: float = 30) -> None:
  """Stops the running points: SIGTERM (each saves its step and exits 75), SIGKILL after
  ``timeout`` seconds."""
  STOPPING.set()
  with _CHILDREN_LOCK:
    procs = list(_CHILDREN)
  for proc in procs:
    proc.terminate()
  for proc in procs:
    try:
      proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      proc.kill()


def run_command(cmd: list[str], cwd: str, env: dict[str, str], log, on_start=None) -> int:
  """Runs one of a point's commands, its output appended to ``log``; returns its exit code.
  :func:`stop_children` reaches it, even while it starts; then ``on_start(pid)`` runs."""
  log.write(f"$ {' '.join(cmd)}\n")
  log.flush()
  proc = subprocess.Popen(
    cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
  )
  with _CHILDREN_LOCK:
    _CHILDREN.add(proc)
    if STOPPING.is_set():  # stop_children ran between the check and Popen
      proc.terminate()
  if on_start is not None:
    on_start(proc.pid)
  try:
    return proc.wait()
  finally:
    with _CHILDREN_LOCK:
      _CHILDREN.discard(proc)


def last_step(point_dir: str) -> int | None:
  """The step of the last row of ``metrics.jsonl`` (None: no row yet); a last line cut short
  (a crash, a write in progress) is skipped."""
  try:
    with open(os.path.join(point_dir, "metrics.jsonl"), "rb") as f:
      lines = [line for line in f.read().splitlines() if line.strip()]
  except OSError:
    return None
  for line in reversed(lines[-2:]):
    try:
      return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
      continue
  return None


def run_point(sweep: Sweep, point: Point, env: dict[str, str], job: dict | None = None) -> dict:
  """Trains and analyzes one point in subprocesses; returns its status (with ``job``: the id
  and cluster of the job running it)."""
  os.makedirs(point.workdir, exist_ok=True)
  record = {"overrides": point.overrides, "config": sweep.config_path, "arg": sweep.arg}
  write_json(os.path.join(point.workdir, POINT_FILE), dict(record, slug=point.slug))
  status_path = os.path.join(point.workdir, STATUS_FILE)
  log_path = os.path.join(point.workdir, LOG_FILE)
  t0 = time.time()
  previous = read_json(status_path) or {}
  before = float(previous.get("total_seconds") or previous.get("seconds") or 0.0)
  before = 0.0 if previous.get("status") == "done" else before
  status = {
    "status": "running",
    "overrides": point.overrides,
    "started": t0,
    "host": socket.gethostname(),
    "pid": os.getpid(),
    "attempt": int(previous.get("attempt", 0)) + 1,
    "start_step": last_step(point.workdir),
    **(job or {}),
  }
  write_json(status_path, status)

  def started(pid: int) -> None:  # the running command's pid, for --cancel
    write_json(status_path, dict(running, run_pid=pid))

  running = dict(status)
  status.update(status="done", returncode=0)
  status.pop("pid")
  with open(log_path, "a", encoding="utf-8") as log:
    for cmd in filter(None, (train_command(sweep, point), analysis_command(sweep, point))):
      if STOPPING.is_set():
        status.update(status="stopped", returncode=None)
        break
      rc = run_command(cmd, sweep.cwd, env, log, started)
      if rc != 0 or STOPPING.is_set():
        # 75/130: the run saved its step (SIGTERM/Ctrl-C); -SIGTERM/-SIGINT:
        # an analysis stopped (--cancel, Ctrl-C to the process group)
        stops = (EXIT_PREEMPTED, EXIT_INTERRUPTED, -signal.SIGTERM, -signal.SIGINT)
        stopped = STOPPING.is_set() or rc in stops
        status.update(status="stopped" if stopped else "failed", returncode=rc)
        status["command"] = " ".join(cmd)
        break
  status["seconds"] = round(time.time() - t0, 1)
  status["total_seconds"] = round(before + status["seconds"], 1)  # all attempts
  status["finished"] = time.time()
  if status["status"] != "done":
    with open(log_path, encoding="utf-8", errors="replace") as f:
      status["log_tail"] = [line.rstrip("\n") for line in f.readlines()[-20:]]
  write_json(status_path, status)
  return status


def record_failure(point: Point, message: str, job: dict | None = None) -> dict:
  """Records a point that could not run at all (its launcher failed)."""
  os.makedirs(point.workdir, exist_ok=True)
  status = {"status": "failed", "returncode": None, "overrides": point.overrides}
  status.update(finished=time.time(), log_tail=[f"error: {message}"], **(job or {}))
  write_json(os.path.join(point.workdir, STATUS_FILE), status)
  return status


def read_status(workdir: str) -> dict | None:
  return read_json(os.path.join(workdir, STATUS_FILE))


def hms(seconds: float) -> str:
  s = int(round(max(seconds, 0)))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
