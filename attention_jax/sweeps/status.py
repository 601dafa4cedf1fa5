"""Where a sweep stands (``--status``): one line per point (pending, running, done, failed,
stopped: docs/sweeps.md) and a total with an ETA, from files only (``sweep.json``, each point's
``sweep_status.json``, ``sweep_job.json`` and ``metrics.jsonl``) and, for a point a scheduler
holds, ``job_state`` of its job (the Slurm launcher's): this module knows no scheduler."""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable

from attention_jax.errors import SweepError
from attention_jax.sweeps.point import JOB_FILE, SWEEP_FILE, hms, last_step, read_json, read_status

# job_state(record) -> "pending" | "running" | "ended" | None (cannot tell)
JobState = Callable[[dict], "str | None"]
STATES = ("done", "running", "pending", "failed", "stopped")


@dataclasses.dataclass
class PointState:
  slug: str
  state: str  # one of STATES
  note: str = ""  # the last log line, the job, why it stopped
  returncode: int | None = None
  elapsed: float | None = None  # seconds: this attempt (running), all (ended)
  step: int | None = None  # the last step in metrics.jsonl
  start_step: int | None = None  # the last step when this attempt started
  steps: int | None = None  # train.steps
  started: float | None = None
  finished: float | None = None


def pid_alive(pid: int) -> bool:
  """Whether process ``pid`` exists on this host and is not a zombie."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


def last_log_line(status: dict) -> str:
  """The run's ``error: ...`` line if it printed one, else its last line."""
  lines = [line.strip() for line in status.get("log_tail") or [] if line.strip()]
  errors = [line for line in lines if line.startswith("error:")]
  return (errors or lines or [""])[-1]


def point_state(
  point_dir: str, slug: str, steps: int | None, job_state: JobState | None = None
) -> PointState:
  """The state of one point from its files and ``job_state`` of its latest job, if any."""
  now, st = time.time(), read_status(point_dir)
  job = read_json(os.path.join(point_dir, JOB_FILE))
  sched = job_state(job) if job and job_state else None
  same_job = bool(st and job and st.get("job_id") == job.get("job_id"))
  out = PointState(slug, "pending", steps=steps, step=last_step(point_dir))
  for k in ("returncode", "started", "finished", "start_step"):
    setattr(out, k, (st or {}).get(k))
  if (
    sched == "ended"
    and same_job
    and job.get("cluster") == "local"
    and st["status"] == "running"
    and st.get("host") == socket.gethostname()
    and pid_alive(int(st.get("pid", 0)))
  ):
    sched = "running"  # its controller ended, its task still runs the point
  if sched == "pending" or (sched == "running" and same_job and st["status"] == "stopped"):
    out.note = f"queued as job {job['job_id']}" + (" (requeued)" if same_job else "")
    return out
  if sched == "running" and not (same_job and st["status"] in ("done", "failed")):
    out.state = "running"
    if same_job and st["status"] == "running":
      out.elapsed = now - st["started"]
    out.note = f"job {job['job_id']}"
    return out
  if st is None:
    if job and sched == "ended":
      out.state = "stopped"
      out.note = f"job {job['job_id']} ended before the point started"
    else:
      out.note = ("submitted as job " + job["job_id"]) if job else "not started"
    return out
  out.state = st["status"]
  if out.state == "running":
    out.elapsed = now - st["started"]
    if sched == "ended" or (
      sched is None
      and st.get("host") == socket.gethostname()
      and not pid_alive(int(st.get("pid", 0)))
    ):
      out.state = "stopped"
      who = f"job {job['job_id']}" if sched == "ended" else f"process {st.get('pid')}"
      out.note = f"{who} ended while the point ran (killed?)"
      out.elapsed = None
    return out
  out.elapsed = st.get("total_seconds", st.get("seconds"))
  if out.state in ("failed", "stopped"):
    out.note = last_log_line(st)
  return out


def sweep_eta(states: list[PointState], parallel: int) -> float:
  """Seconds until every point is done (NaN: unknown): a running point at the pace of its
  attempt (since the step it resumed from), a pending one in the mean time of those done,
  ``parallel`` at a time."""
  done = [s.elapsed for s in states if s.state == "done" and s.elapsed]
  mean = sum(done) / len(done) if done else math.nan
  left = []
  for s in states:
    if s.state == "running":
      done_now = (s.step or 0) - (s.start_step or 0)  # this attempt's steps
      if done_now > 0 and s.steps and s.elapsed is not None:
        left.append(max(0.0, s.elapsed * (s.steps - s.step) / done_now))
      elif s.elapsed is not None and not math.isnan(mean):
        left.append(max(0.0, mean - s.elapsed))
      else:
        left.append(mean)  # unknown (NaN) until a point is done
  pending = sum(s.state == "pending" for s in states)
  if not left and not pending:
    return 0.0
  work = sum(left) + (pending * mean if pending else 0.0)
  return math.nan if math.isnan(work) else max(max(left, default=0.0), work / parallel)


def status_lines(sweep_dir: str, job_state: JobState | None = None) -> list[str]:
  """The ``--status`` table: a header, one line per point, a total."""
  info = read_json(os.path.join(sweep_dir, SWEEP_FILE))
  if not info:
    path = os.path.join(sweep_dir, SWEEP_FILE)
    raise SweepError(f"{path} not found or not readable: is --workdir a sweep directory?")
  states = [
    point_state(os.path.join(sweep_dir, p["slug"]), p["slug"], p.get("steps"), job_state)
    for p in info["points"]
  ]
  launcher = info.get("launcher") or {}
  where = f"launcher {launcher.get('name', '?')}"
  where += f", cluster {launcher['cluster']}" if launcher.get("cluster") else ""
  lines = [f"sweep {info.get('title', '')} in {sweep_dir} ({where})"]
  w = max(len(s.slug) for s in states)
  lines.append(f"{'point':<{w}}  {'state':<8} {'exit':>4}  {'elapsed':>8}  {'step':>11}  note")
  for s in states:
    rc = "" if s.returncode in (None, 0) else str(s.returncode)
    elapsed = "" if s.elapsed is None else hms(s.elapsed)
    step = "" if s.step is None else f"{s.step}/{s.steps or '?'}"
    line = f"{s.slug:<{w}}  {s.state:<8} {rc:>4}  {elapsed:>8}  {step:>11}  {s.note}"
    lines.append(line.rstrip())
  counts = ", ".join(f"{n} {k}" for k in STATES if (n := sum(s.state == k for s in states)))
  started = [s.started for s in states if s.started]
  ends = [s.finished for s in states if s.finished]
  active = any(s.state in ("running", "pending") for s in states)
  end = time.time() if active or not ends else max(ends)
  elapsed = hms(end - min(started)) if started else "0:00:00"
  n = len(states)
  left = sweep_eta(
    states, max(1, min(n, launcher.get("jobs") or launcher.get("array_parallelism") or n))
  )
  eta = "?" if math.isnan(left) else hms(left)
  lines.append(f"total: {n} points: {counts}; elapsed {elapsed}, ETA {eta}")
  if any(s.state == "stopped" for s in states):
    lines.append("stopped points resume from their checkpoints when the sweep command runs again")
  return lines
