"""The ``slurm`` launcher: a sweep's points as one Slurm job array, via submitit.

``run_sweep`` submits the points that are neither done nor running through
``submitit.AutoExecutor``, one point per array task. Each task runs
:func:`attention_jax.sweeps.point.run_point` — ``python -m experiments.run``
then the analyses, in the point's workdir ``S/<slug>/`` — exactly as the
local launcher does, so ``summary.csv``, ``report.md`` and the plots are the
same whichever launcher ran the points. On disk:

* ``S/slurm/``: submitit's files — the pickled job
  (``<job id>_submitted.pkl``: a :class:`PointJob`, the point's overrides and
  paths) and result, each task's stdout/stderr
  (``<job id>_<task>_log.out/.err``), the sbatch script;
* ``S/<slug>/sweep_job.json``: the point's latest job (id, cluster, time);
* ``S/<slug>/sweep.log``: the point's subprocesses' output (task k > 0 of a
  several-task point: ``sweep.task<k>.log``); ``sweep_status.json``.

Preemption and time limits: Slurm sends USR2 ``signal_delay_s`` (90 s) before
a job's time limit, and on preemption; submitit then calls
:meth:`PointJob.checkpoint` in task 0, which sends SIGTERM to the running
``experiments.run`` (it finishes the step, saves it and exits 75; with
several processes all save the same step), then submitit requeues the job,
which resumes from that checkpoint. A point whose job died anyway (SIGKILL,
a node failure, out of requeues) or exited 75 is resubmitted by the next
sweep command (or by the one waiting with ``--wait``); a point that failed
for a reason of its own is recorded and, with ``--wait``, resubmitted at most
``--max_retries`` times.

``cluster``: ``slurm`` (sbatch), ``local`` (submitit's local executor: the
same code path on this machine; the sweep starts at most
``array_parallelism`` points at once, since that executor starts all it is
given) or ``debug`` (each point inside this process, one after another).

A point of several tasks (``nodes_per_point`` × ``tasks_per_node``) runs one
``experiments.run`` process per task with ``jax.distributed``: the task's
rank is ``JAX_PROCESS_ID``, the number of tasks ``JAX_NUM_PROCESSES``, and
task 0 picks a free port on its node for ``JAX_COORDINATOR_ADDRESS`` (read
by the others from ``S/<slug>/sweep_coordinator.json``).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import shutil
import signal
import subprocess
import time
from typing import Any, Callable

import submitit

from attention_jax.errors import SweepError
from attention_jax.sweeps import point as point_lib
from attention_jax.sweeps import runner, status
from attention_jax.sweeps.point import JOB_FILE, SWEEP_FILE, Point, Sweep
from attention_jax.sweeps.slurm_job import PointJob
from attention_jax.sweeps import slurm_options
from attention_jax.sweeps.slurm_options import Options, resolve_options
from attention_jax.sweeps.spec import load_sweep

SUBMITIT_DIR = "slurm"                     # S/slurm/<job id>_*
MAX_RESUBMITS = 3       # of a stopped point, by one waiting sweep command
# sacct states (the first word) of a job that is alive
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING",
            "RESV_DEL_HOLD", "SUSPENDED"}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


# --------------------------------------------------------------------------
# Jobs: submission, state, cancellation


def _slurm_state(job_id: str) -> str | None:
  raw = submitit.SlurmJob.watcher.get_state(job_id, mode="cache")
  word = raw.split()[0].upper() if raw else "UNKNOWN"
  if word in _PENDING:
    return "pending"
  if word in _RUNNING:
    return "running"
  return None if word == "UNKNOWN" else "ended"


def refresh_slurm(job_ids) -> None:
  """One ``sacct`` call for the states of ``job_ids`` (submitit's watcher)."""
  job_ids = list(job_ids)
  if not job_ids:
    return
  for job_id in job_ids:
    submitit.SlurmJob.watcher.register_job(job_id)
  submitit.SlurmJob.watcher.update()


def job_state(record: dict, job=None) -> str | None:
  """``pending``, ``running``, ``ended`` or None (cannot tell) for a point's
  job record, from the submitit ``job`` object when this process submitted
  it. Slurm states come from the last :func:`refresh_slurm`; a local job is
  alive while its submitit controller process is; a debug job runs inside
  the command that submitted it."""
  cluster = record.get("cluster")
  if cluster == "slurm":
    return _slurm_state(record["job_id"])
  if cluster == "local":
    if job is not None:
      return "running" if job.state == "RUNNING" else "ended"
    pid = int(record["job_id"])
    try:
      with open(f"/proc/{pid}/cmdline", "rb") as f:
        ours = b"submitit" in f.read()
    except OSError:
      ours = True   # no /proc: trust the pid
    return "running" if ours and status.pid_alive(pid) else "ended"
  if cluster == "debug" and job is not None:
    return "ended" if job.state == "DONE" else "pending"
  return None


def job_states(sweep_dir: str) -> status.JobState:
  """A ``job_state`` for :func:`status.status_lines`: Slurm states of every
  point of the sweep in ``sweep_dir``, from one ``sacct`` call."""
  info = point_lib.read_json(os.path.join(sweep_dir, SWEEP_FILE)) or {}
  records = [point_lib.read_json(os.path.join(sweep_dir, p["slug"], JOB_FILE))
             for p in info.get("points", [])]
  refresh_slurm(r["job_id"] for r in records if r and r.get("cluster") == "slurm")
  return job_state


def _executor(sweep: Sweep, workdir: str, o: Options) -> submitit.AutoExecutor:
  executor = submitit.AutoExecutor(folder=os.path.join(workdir, SUBMITIT_DIR),
                                   cluster=o.cluster)
  name = os.path.splitext(os.path.basename(sweep.config_path))[0]
  params: dict[str, Any] = {
      "name": f"sweep_{name}", "timeout_min": o.timeout_min,
      "nodes": o.nodes_per_point, "tasks_per_node": o.tasks_per_node,
      "gpus_per_node": o.gpus_per_point // o.nodes_per_point}
  if o.cpus_per_point:
    params["cpus_per_task"] = o.cpus_per_point // o.tasks
  if o.cluster == "slurm":
    for key in ("partition", "account", "qos"):
      if getattr(o, f"slurm_{key}"):
        params[f"slurm_{key}"] = getattr(o, f"slurm_{key}")
    if o.array_parallelism:
      params["slurm_array_parallelism"] = o.array_parallelism
    if o.slurm_extra:
      params["slurm_additional_parameters"] = dict(o.slurm_extra)
  if o.cluster == "debug":
    params = {"name": params["name"]}
  executor.update_parameters(**params)
  return executor


@dataclasses.dataclass
class _Handle:
  point: Point
  record: dict
  job: Any = None      # the submitit job, when this process submitted it

  def state(self) -> str | None:
    return job_state(self.record, self.job)


def _submit(executor, sweep: Sweep, points: list[Point], o: Options,
            submissions: dict[str, int]) -> dict[str, _Handle]:
  if o.cluster == "local":
    jobs_on_host, threads = (o.parallel or 1) * o.tasks, None
  else:
    jobs_on_host, threads = 1, None
  if o.cpus_per_point:
    threads = o.cpus_per_point // o.tasks
  gpus_per_task = o.gpus_per_point // o.tasks if o.tasks > o.nodes_per_point else 0
  fns = [PointJob(sweep, p, jobs_on_host, threads, gpus_per_task) for p in points]
  for p in points:
    os.makedirs(p.workdir, exist_ok=True)
  jobs = executor.submit_array(fns)
  handles = {}
  for p, job in zip(points, jobs):
    submissions[p.slug] = submissions.get(p.slug, 0) + 1
    record = {"job_id": str(job.job_id), "cluster": o.cluster,
              "submitted": time.time(), "cancelled": False,
              "folder": str(executor.folder)}
    point_lib.write_json(os.path.join(p.workdir, JOB_FILE), record)
    handles[p.slug] = _Handle(p, record, job)
  return handles


def _array_ids(handles) -> str:
  ids = [h.record["job_id"] for h in handles]
  arrays = sorted({i.split("_")[0] for i in ids if "_" in i})
  if len(arrays) == 1 and len(ids) > 1:
    return f"job array {arrays[0]}"
  return ("job " if len(ids) == 1 else "jobs ") + ", ".join(ids)


def _follow_text(spec_cmd: str, workdir: str, o: Options, ids: str) -> list[str]:
  lines = [f"  follow:  python -m experiments.sweep --workdir {workdir} --status"]
  if o.cluster == "slurm":
    lines.append(f"           squeue --me; sacct -j {ids.split()[-1]}; "
                 f"tail -f {workdir}/<point>/sweep.log")
  else:
    lines.append(f"           tail -f {workdir}/<point>/sweep.log")
  lines += [f"  wait:    {spec_cmd} --wait   (submits only what is neither done "
            "nor running, then waits and writes the report)",
            f"  report:  {spec_cmd} --report_only   (the points finished so far)",
            f"  cancel:  python -m experiments.sweep --workdir {workdir} --cancel"]
  return lines


def run_sweep(spec: str, workdir: str, cluster: str = "slurm",
              flags: dict[str, Any] | None = None, wait: bool = False,
              max_retries: int = 0, reanalyze: bool = False,
              print_fn: Callable[[str], None] = print,
              poll_s: float | None = None,
              command: str | None = None) -> list[dict] | None:
  """The ``slurm`` launcher: submits every point neither done nor running as
  one job array; with ``wait`` (always on the debug cluster) waits for them,
  resubmits stopped points, retries failed ones at most ``max_retries``
  times, then writes the summary, plots and report and returns one status
  per point. Without ``wait`` returns None after submitting.

  ``flags``: the resource flags given on the command line (name -> value);
  ``command``: the sweep command, for the lines that tell how to follow.
  Raises SweepError before anything is written for a bad flag, no Slurm, a
  /tmp directory with ``cluster="slurm"``, or a bad config.
  """
  workdir = os.path.abspath(workdir)
  slurm_options.check(cluster, workdir, dict(flags or {}), wait, max_retries)
  wait = wait or cluster == "debug"
  sweep = load_sweep(spec, workdir)
  o = resolve_options(dict(flags or {}), sweep.resources, cluster, sweep.config_path)
  os.makedirs(workdir, exist_ok=True)
  runner.write_sweep_file(sweep, workdir, {
      "name": "slurm", "cluster": cluster, "array_parallelism": o.parallel,
      "folder": os.path.join(workdir, SUBMITIT_DIR)})
  records = {p.slug: point_lib.read_json(os.path.join(p.workdir, JOB_FILE))
             for p in sweep.points}
  refresh_slurm(r["job_id"] for r in records.values()
                if r and r.get("cluster") == "slurm")
  results, active, todo = {}, {}, []
  for p in sweep.points:
    ps = status.point_state(p.workdir, p.slug, p.steps, job_state)
    record = records[p.slug]
    if ps.state == "done" and not reanalyze:
      results[p.slug] = dict(point_lib.read_status(p.workdir), status="skipped")
    elif record and ps.state in ("pending", "running") and job_state(record) in (
        "pending", "running"):
      active[p.slug] = _Handle(p, record)
    else:
      todo.append(p)
  print_fn(f"sweep {sweep.title}: {len(sweep.points)} points, {len(results)} "
           f"already finished, {len(active)} running or queued, {len(todo)} to "
           f"submit (cluster {cluster}" + (f", {o.parallel} at a time)"
                                          if o.parallel else ")"))
  executor = _executor(sweep, workdir, o) if todo else None
  submissions: dict[str, int] = {}
  room = len(todo) if o.parallel is None or cluster == "slurm" else max(
      0, o.parallel - len(active))
  if todo and room:
    new = _submit(executor, sweep, todo[:room], o, submissions)
    active.update(new)
    todo = todo[room:]
    if cluster != "debug":
      print_fn(f"submitted {len(new)} point(s) as {_array_ids(new.values())} "
               f"(cluster {cluster}); submitit's files in "
               f"{os.path.join(workdir, SUBMITIT_DIR)}")
  if not wait:
    if todo:
      print_fn(f"{len(todo)} point(s) wait: the local cluster runs {o.parallel} "
               "at a time; the same command submits them later (or add --wait)")
    if active:
      ids = _array_ids(active.values())
      for line in _follow_text(command or f"python -m experiments.sweep "
                               f"--config {spec} --workdir {workdir} --launcher "
                               f"slurm --cluster {cluster}", workdir, o, ids):
        print_fn(line)
    return None
  return _wait(sweep, workdir, o, executor, active, todo, results, submissions,
               max_retries, print_fn, poll_s)


def _wait(sweep, workdir, o, executor, active, queue, results, submissions,
          max_retries, print_fn, poll_s) -> list[dict]:
  """Waits for the active jobs, submitting the queued points as room frees
  (local cluster), resubmitting stopped points and retrying failed ones."""
  poll_s = poll_s or (30.0 if o.cluster == "slurm" else 1.0)
  total = len(active) + len(queue)
  t0, n, durations = time.time(), 0, []
  retries: dict[str, int] = collections.Counter()
  resubmits: dict[str, int] = collections.Counter()
  try:
    while active or queue:
      room = len(queue) if o.parallel is None or o.cluster == "slurm" else max(
          0, o.parallel - len(active))
      if queue and room:
        executor = executor or _executor(sweep, workdir, o)
        active.update(_submit(executor, sweep, queue[:room], o, submissions))
        queue = queue[room:]
      if o.cluster == "debug":
        for h in active.values():
          h.job.wait()          # runs the point here, now
      else:
        time.sleep(poll_s)
        refresh_slurm(h.record["job_id"] for h in active.values()
                      if o.cluster == "slurm")
      for slug, h in list(active.items()):
        state = h.state()
        if state in ("pending", "running") or (state is None and not _final(h)):
          continue                # alive, or Slurm cannot tell yet
        del active[slug]
        p = h.point
        ps = status.point_state(p.workdir, p.slug, p.steps, lambda r: "ended")
        cancelled = (point_lib.read_json(os.path.join(p.workdir, JOB_FILE)) or {}).get(
            "cancelled")
        if ps.state == "failed" and retries[slug] < max_retries:
          retries[slug] += 1
          print_fn(f"{slug}: failed (exit {ps.returncode}: {ps.note}); retry "
                   f"{retries[slug]} of {max_retries}")
          queue.append(p)
          continue
        if ps.state in ("stopped", "pending") and not cancelled and (
            resubmits[slug] < MAX_RESUBMITS):
          resubmits[slug] += 1
          print_fn(f"{slug}: stopped ({ps.note or 'exit %s' % ps.returncode}); "
                   f"resubmitting ({resubmits[slug]} of {MAX_RESUBMITS})")
          queue.append(p)
          continue
        st = dict(point_lib.read_status(p.workdir) or {}, status=ps.state)
        st.setdefault("overrides", p.overrides)
        results[slug] = st
        n += 1
        elapsed = time.time() - t0
        durations.append(st.get("seconds") or elapsed)
        print_fn(runner.progress_line(
            n, total, p, st, elapsed,
            runner.eta(durations, total - n, o.parallel or total)))
  except KeyboardInterrupt:
    if o.cluster == "slurm":
      print_fn("stopped waiting; the jobs go on: follow them with "
               f"python -m experiments.sweep --workdir {workdir} --status")
    raise
  return runner.finish(sweep, workdir, results, print_fn)


def _final(h: _Handle) -> bool:
  st = point_lib.read_status(h.point.workdir) or {}
  return st.get("job_id") == h.record["job_id"] and st.get("status") in (
      "done", "failed", "stopped")


def cancel(sweep_dir: str, print_fn: Callable[[str], None] = print) -> int:
  """Cancels the pending and running jobs of the sweep in ``sweep_dir``: a
  running point saves its step first (Slurm sends SIGTERM; a local job gets
  SIGINT, and its point SIGTERM). The next sweep command resubmits them.
  Returns the number of jobs cancelled."""
  sweep_dir = os.path.abspath(sweep_dir)
  info = point_lib.read_json(os.path.join(sweep_dir, SWEEP_FILE))
  if not info:
    raise SweepError(f"{os.path.join(sweep_dir, SWEEP_FILE)} not found: is "
                     "--workdir a sweep directory?")
  if (info.get("launcher") or {}).get("name") != "slurm":
    raise SweepError(f"{sweep_dir} was run by the local launcher: stop it with "
                     "Ctrl-C or SIGTERM to its sweep command")
  state_of = job_states(sweep_dir)
  slurm_ids, local_pids, cancelled = [], [], []
  for p in info["points"]:
    path = os.path.join(sweep_dir, p["slug"], JOB_FILE)
    record = point_lib.read_json(path)
    if not record or state_of(record) not in ("pending", "running"):
      continue
    if record["cluster"] == "slurm":
      slurm_ids.append(record["job_id"])
    elif record["cluster"] == "local":
      local_pids.append(int(record["job_id"]))
    else:
      continue
    point_lib.write_json(path, dict(record, cancelled=True))
    cancelled.append(p["slug"])
  if slurm_ids:
    if shutil.which("scancel") is None:
      raise SweepError("scancel is not on PATH: cancel from a machine of the cluster")
    subprocess.run(["scancel", *slurm_ids], check=True)
  for pid in local_pids:
    try:
      os.kill(pid, signal.SIGINT)   # what submitit's LocalJob.cancel sends
    except ProcessLookupError:
      pass
  if cancelled:
    print_fn(f"cancelled {len(cancelled)} job(s): {', '.join(cancelled)}; running "
             "points save their step first; the sweep command resubmits them")
  else:
    print_fn(f"nothing to cancel in {sweep_dir}: no point is pending or running")
  return len(cancelled)
