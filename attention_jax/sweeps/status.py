"""Where a sweep stands: one line per point and a total with an ETA.

``python -m experiments.sweep --workdir S --status`` reads files only — no
config file, no jax: ``S/sweep.json`` (the points and the launcher), each
point's ``sweep_status.json`` (:func:`attention_jax.sweeps.point.run_point`
keeps it current), ``sweep_job.json`` (its latest scheduler job, with
``--launcher slurm``) and ``metrics.jsonl`` (the step reached). What a
scheduler says of a point's job comes from ``job_state`` (the Slurm launcher's
:func:`attention_jax.sweeps.slurm.job_state`), so this module knows no
scheduler.

A point is

* ``pending``: not started (never submitted, or queued, or requeued);
* ``running``: its job or process is alive;
* ``done``;
* ``failed``: for a reason of its own (exit code, last log line);
* ``stopped``: stopped from outside (a preemption, SIGTERM, Ctrl-C: exit code
  75 after saving its step) or its job or process died (a signal, SIGKILL, a
  node failure); the next sweep command resubmits it and it resumes from its
  checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import time
from collections.abc import Callable

from attention_jax import writers
from attention_jax.errors import SweepError
from attention_jax.sweeps.point import JOB_FILE, SWEEP_FILE, hms, read_json, read_status

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


def last_step(point_dir: str) -> int | None:
  try:
    rows = writers.read_metrics(point_dir)
  except (OSError, ValueError):  # not written yet, or a line being written
    return None
  return rows[-1]["step"] if rows else None


def last_log_line(status: dict) -> str:
  """The run's ``error: ...`` line if it printed one, else its last line."""
  lines = [line.strip() for line in status.get("log_tail") or [] if line.strip()]
  errors = [line for line in lines if line.startswith("error:")]
  return (errors or lines or [""])[-1]


def point_state(
  point_dir: str,
  slug: str,
  steps: int | None,
  job_state: JobState | None = None,
  now: float | None = None,
) -> PointState:
  """The state of one point from its files and, for a point a scheduler
  holds, ``job_state`` of its latest job."""
  now = time.time() if now is None else now
  st = read_status(point_dir)
  job = read_json(os.path.join(point_dir, JOB_FILE))
  sched = job_state(job) if job and job_state else None
  same_job = bool(st and job and st.get("job_id") == job.get("job_id"))
  out = PointState(slug, "pending", steps=steps, step=last_step(point_dir))
  if st:
    out.returncode, out.started = st.get("returncode"), st.get("started")
    out.finished, out.start_step = st.get("finished"), st.get("start_step")
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


def sweep_states(
  sweep_dir: str, job_state: JobState | None = None
) -> tuple[dict, list[PointState]]:
  """``S/sweep.json`` and the state of each of its points."""
  info = read_json(os.path.join(sweep_dir, SWEEP_FILE))
  if not info:
    raise SweepError(
      f"{os.path.join(sweep_dir, SWEEP_FILE)} not found or not "
      "readable: is --workdir a sweep directory?"
    )
  now = time.time()
  states = [
    point_state(os.path.join(sweep_dir, p["slug"]), p["slug"], p.get("steps"), job_state, now)
    for p in info["points"]
  ]
  return info, states


def _parallel(launcher: dict | None, n: int) -> int:
  launcher = launcher or {}
  return max(1, min(n, launcher.get("jobs") or launcher.get("array_parallelism") or n))


def sweep_eta(states: list[PointState], parallel: int) -> float:
  """Seconds until every pending and running point is done: running points by
  the pace of their attempt (elapsed × steps left / steps done since the
  attempt started), pending ones by the mean time of
  the points done so far, ``parallel`` at a time. NaN when unknown."""
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
  if math.isnan(work):
    return math.nan
  return max(max(left, default=0.0), work / parallel)


def status_lines(sweep_dir: str, job_state: JobState | None = None) -> list[str]:
  """The ``--status`` table: a header, one line per point, a total."""
  info, states = sweep_states(sweep_dir, job_state)
  launcher = info.get("launcher") or {}
  name = launcher.get("name", "?")
  where = f"launcher {name}" + (
    f", cluster {launcher['cluster']}" if launcher.get("cluster") else ""
  )
  lines = [f"sweep {info.get('title', '')} in {sweep_dir} ({where})"]
  width = max(len(s.slug) for s in states)
  lines.append(f"{'point':<{width}}  {'state':<8} {'exit':>4}  {'elapsed':>8}  {'step':>11}  note")
  for s in states:
    rc = "" if s.returncode in (None, 0) else str(s.returncode)
    elapsed = "" if s.elapsed is None else hms(s.elapsed)
    step = "" if s.step is None else f"{s.step}/{s.steps or '?'}"
    lines.append(
      f"{s.slug:<{width}}  {s.state:<8} {rc:>4}  {elapsed:>8}  {step:>11}  {s.note}".rstrip()
    )
  counts = ", ".join(
    f"{sum(s.state == k for s in states)} {k}" for k in STATES if any(s.state == k for s in states)
  )
  started = [s.started for s in states if s.started]
  active = any(s.state in ("running", "pending") for s in states)
  ends = [s.finished for s in states if s.finished]
  end = time.time() if active or not ends else max(ends)
  elapsed = hms(end - min(started)) if started else "0:00:00"
  left = sweep_eta(states, _parallel(launcher, len(states)))
  lines.append(
    f"total: {len(states)} points: {counts}; elapsed {elapsed}, "
    f"ETA {'?' if math.isnan(left) else hms(left)}"
  )
  if any(s.state == "stopped" for s in states):
    lines.append("stopped points resume from their checkpoints when the sweep command runs again")
  return lines
