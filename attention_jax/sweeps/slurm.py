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

Time limits: Slurm sends USR2 ``SIGNAL_DELAY_S`` (90 s) before a job's time
limit; submitit then calls :meth:`PointJob.checkpoint` in task 0, which sends
SIGTERM to the running ``experiments.run`` (it finishes the step, saves it and
exits 75; with several processes all save the same step), then submitit
requeues the job (at most ``MAX_NUM_TIMEOUT`` times), which resumes from that
checkpoint. Preemption: Slurm sends SIGTERM to every process of the job (USR2
only with ``SchedulerParameters=preempt_send_user_signal``), then SIGKILL
after its KillWait; the run saves and exits 75, and Slurm requeues the job or
not depending on its ``PreemptMode``. A point whose job died anyway (SIGKILL,
a node failure, out of requeues) or exited 75 is resubmitted by the next sweep
command (or by the one waiting with ``--wait``); a point that failed for a
reason of its own is recorded and, with ``--wait``, resubmitted at most
``--max_retries`` times.

Job states come from ``sacct`` (then ``squeue``), queried here; a job whose
state neither tells is taken as alive: its point is never submitted twice.

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
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import submitit

from attention_jax.errors import SweepError
from attention_jax.sweeps import point as point_lib
from attention_jax.sweeps import runner, slurm_options, status
from attention_jax.sweeps.point import JOB_FILE, SWEEP_FILE, Point, Sweep
from attention_jax.sweeps.slurm_job import STOP_TIMEOUT_S, PointJob
from attention_jax.sweeps.slurm_options import SIGNAL_DELAY_S, Options, resolve_options
from attention_jax.sweeps.spec import load_sweep

SUBMITIT_DIR = "slurm"  # S/slurm/<job id>_*
MAX_RESUBMITS = 3  # of a stopped point, by one waiting sweep command
MAX_NUM_TIMEOUT = 3  # requeues after a time limit, per job (submitit's cap)
# sacct/squeue states (the first word) of a job that is alive
_PENDING = {
  "PENDING",
  "REQUEUED",
  "REQUEUE_HOLD",
  "REQUEUE_FED",
  "CONFIGURING",
  "RESV_DEL_HOLD",
  "SUSPENDED",
  "STOPPED",
  "SPECIAL_EXIT",
}
_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}
_STATES: dict[str, str] = {}  # job id -> state word, from the last refresh_slurm


# --------------------------------------------------------------------------
# Jobs: submission, state, cancellation


def _expand(job_id: str) -> list[str]:
  """``900_[4-7%2]`` -> ``900_4`` .. ``900_7``; ``900_3``, ``900`` as they are."""
  base, sep, rest = job_id.partition("_[")
  if not sep:
    return [job_id]
  ids = []
  for part in rest.rstrip("]").split("%")[0].split(","):
    lo, _, hi = part.partition("-")
    if lo.isdigit() and (not hi or hi.isdigit()):
      ids += [f"{base}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
  return ids


def _query(cmd: list[str]) -> dict[str, str]:
  """{job id: state word} from ``sacct``/``squeue`` lines ``ID<sep>STATE``;
  {} when the command fails or is missing (the states stay unknown)."""
  try:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
  except (OSError, subprocess.SubprocessError):
    return {}
  states = {}
  for line in out.stdout.splitlines() if out.returncode == 0 else ():
    job, _, state = line.rpartition("|" if "|" in line else ",")  # 900_[1,3],PENDING
    if job.strip() and state.strip():
      for job_id in _expand(job.strip()):
        states[job_id] = state.split()[0].upper()
  return states


def refresh_slurm(job_ids) -> None:
  """The states of ``job_ids``: one ``sacct`` call, then ``squeue`` for those
  sacct does not know (its database lags, or it is down). A job neither
  answers for stays unknown: :func:`job_state` says None."""
  job_ids = sorted(set(job_ids))
  for job_id in job_ids:
    _STATES.pop(job_id, None)
  if not job_ids:
    return
  if shutil.which("sacct"):
    arrays = sorted({i.split("_")[0] for i in job_ids})
    _STATES.update(_query(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(arrays)]))
  missing = [i for i in job_ids if i not in _STATES]
  if missing and shutil.which("squeue"):
    _STATES.update(_query(["squeue", "-h", "-j", ",".join(missing), "-o", "%i,%T"]))


def _slurm_state(job_id: str) -> str | None:
  word = _STATES.get(job_id)
  if word is None:
    return None
  if word in _PENDING:
    return "pending"
  if word in _RUNNING:
    return "running"
  return "ended"


def job_state(record: dict, job=None) -> str | None:
  """``pending``, ``running``, ``ended`` or None (cannot tell) for a point's
  job record, from the submitit ``job`` object when this process submitted
  it. Slurm states come from the last :func:`refresh_slurm` (None: neither
  sacct nor squeue answered; such a job may be alive); a local job is
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
      ours = True  # no /proc: trust the pid
    return "running" if ours and status.pid_alive(pid) else "ended"
  if cluster == "debug" and job is not None:
    return "ended" if job.state == "DONE" else "pending"
  return None


def job_states(sweep_dir: str) -> status.JobState:
  """A ``job_state`` for :func:`status.status_lines`: Slurm states of every
  point of the sweep in ``sweep_dir``, from one ``sacct`` call."""
  info = point_lib.read_json(os.path.join(sweep_dir, SWEEP_FILE)) or {}
  records = [
    point_lib.read_json(os.path.join(sweep_dir, p["slug"], JOB_FILE))
    for p in info.get("points", [])
  ]
  refresh_slurm(r["job_id"] for r in records if r and r.get("cluster") == "slurm")
  return job_state


def _executor(sweep: Sweep, workdir: str, o: Options) -> submitit.AutoExecutor:
  executor = submitit.AutoExecutor(
    folder=os.path.join(workdir, SUBMITIT_DIR),
    cluster=o.cluster,
    slurm_max_num_timeout=MAX_NUM_TIMEOUT,
    local_max_num_timeout=MAX_NUM_TIMEOUT,
  )
  name = os.path.splitext(os.path.basename(sweep.config_path))[0]
  params: dict[str, Any] = {
    "name": f"sweep_{name}",
    "timeout_min": o.timeout_min,
    "nodes": o.nodes_per_point,
    "tasks_per_node": o.tasks_per_node,
  }
  if o.gpus_per_point and o.cluster == "slurm":  # local: PointJob.local_gpus
    params["gpus_per_node"] = o.gpus_per_point // o.nodes_per_point
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
    params["slurm_signal_delay_s"] = SIGNAL_DELAY_S
  if o.cluster == "debug":
    params = {"name": params["name"]}
  executor.update_parameters(**params)
  if o.cluster == "local":  # AutoExecutor passes no signal_delay_s (default 30 s)
    executor._executor.update_parameters(signal_delay_s=SIGNAL_DELAY_S)
    _undo_ignored_sigint()
  return executor


def _undo_ignored_sigint() -> None:
  """submitit stops a local job with SIGINT (to its controller, which passes
  it to the tasks as KeyboardInterrupt). A command started in the background
  (``nohup … &``) ignores SIGINT, and an ignored signal stays ignored in every
  child it starts — the controller and the tasks would never stop. A handled
  signal is reset to its default in a child, so handling it here undoes that."""
  if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclasses.dataclass
class _Handle:
  point: Point
  record: dict
  job: Any = None  # the submitit job, when this process submitted it
  executor: Any = None  # the executor that submitted it

  def state(self) -> str | None:
    return job_state(self.record, self.job)


def _gpu_pool() -> list[str]:
  """The GPUs the local cluster hands out: the sweep command's
  ``CUDA_VISIBLE_DEVICES`` (or 0 .. n-1), as many as ``nvidia-smi`` sees."""
  n = runner.gpu_count()
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else []
  return (ids or [str(i) for i in range(n)])[:n]


def _local_gpus(points: list[Point], o: Options, busy: set[str]) -> list:
  """Each point's own ``gpus_per_point`` GPUs from the pool less ``busy``
  (those of the local jobs still running); None for each without GPUs."""
  if o.cluster != "local" or not o.gpus_per_point:
    return [None] * len(points)
  free = [g for g in _gpu_pool() if g not in busy]
  g = o.gpus_per_point
  if len(free) < g * len(points):
    raise SweepError(
      f"--gpus_per_point {g}: {len(points)} point(s) need "
      f"{g * len(points)} GPU(s), {len(free)} free on this machine"
    )
  return [free[k * g : (k + 1) * g] for k in range(len(points))]


def _sbatch_error(e: Exception) -> SweepError:
  lines = [
    line.strip() for line in str(getattr(e, "stderr", None) or e).splitlines() if line.strip()
  ]
  return SweepError(f"sbatch refused the job array: {lines[-1] if lines else e}")


def _submit(
  executor, sweep: Sweep, points: list[Point], o: Options, busy: set[str] = frozenset()
) -> dict[str, _Handle]:
  """Submits ``points`` as one job array and writes each one's
  ``sweep_job.json``; SweepError (one line) if sbatch refuses it."""
  if o.cluster == "local":
    jobs_on_host, threads = (o.parallel or 1) * o.tasks, None
  else:
    jobs_on_host, threads = 1, None
  if o.cpus_per_point:
    threads = o.cpus_per_point // o.tasks
  gpus_per_task = o.gpus_per_point // o.tasks if o.tasks > o.nodes_per_point else 0
  gpus = _local_gpus(points, o, set(busy))
  fns = [
    PointJob(sweep, p, jobs_on_host, threads, gpus_per_task, g)
    for p, g in zip(points, gpus, strict=True)
  ]
  try:
    jobs = executor.submit_array(fns)
  except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as e:
    raise _sbatch_error(e) from e
  handles = {}
  for p, job, g in zip(points, jobs, gpus, strict=True):
    os.makedirs(p.workdir, exist_ok=True)
    record = {
      "job_id": str(job.job_id),
      "cluster": o.cluster,
      "submitted": time.time(),
      "cancelled": False,
      "folder": str(executor.folder),
    }
    if g:
      record["gpus"] = g
    point_lib.write_json(os.path.join(p.workdir, JOB_FILE), record)
    handles[p.slug] = _Handle(p, record, job, executor)
  return handles


def _busy_gpus(handles) -> set[str]:
  return {g for h in handles for g in h.record.get("gpus") or ()}


def _array_ids(handles) -> str:
  ids = [h.record["job_id"] for h in handles]
  arrays = sorted({i.split("_")[0] for i in ids if "_" in i})
  if len(arrays) == 1 and len(ids) > 1:
    return f"job array {arrays[0]}"
  return ("job " if len(ids) == 1 else "jobs ") + ", ".join(ids)


def _follow_text(spec_cmd: str, workdir: str, o: Options, ids: str) -> list[str]:
  lines = [f"  follow:  python -m experiments.sweep --workdir {workdir} --status"]
  if o.cluster == "slurm":
    lines.append(
      f"           squeue --me; sacct -j {ids.split()[-1]}; tail -f {workdir}/<point>/sweep.log"
    )
  else:
    lines.append(f"           tail -f {workdir}/<point>/sweep.log")
  lines += [
    f"  wait:    {spec_cmd} --wait   (submits only what is neither done "
    "nor running, then waits and writes the report)",
    f"  report:  {spec_cmd} --report_only   (the points finished so far)",
    f"  cancel:  python -m experiments.sweep --workdir {workdir} --cancel",
  ]
  return lines


def run_sweep(
  spec: str,
  workdir: str,
  cluster: str = "slurm",
  flags: dict[str, Any] | None = None,
  wait: bool = False,
  max_retries: int = 0,
  reanalyze: bool = False,
  print_fn: Callable[[str], None] = print,
  poll_s: float | None = None,
  command: str | None = None,
  seeds: int | None = None,
) -> list[dict] | None:
  """The ``slurm`` launcher: submits every point neither done nor running as
  one job array; with ``wait`` (always on the debug cluster) waits for them,
  resubmits stopped points, retries failed ones at most ``max_retries``
  times, then writes the summary, plots and report and returns one status
  per point. Without ``wait`` returns None after submitting.

  ``flags``: the resource flags given on the command line (name -> value);
  ``command``: the sweep command, for the lines that tell how to follow;
  ``seeds``: ``--seeds N`` (each seed-run is one array task).
  Raises SweepError before anything is written for a bad flag, no Slurm, a
  /tmp directory with ``cluster="slurm"``, or a bad config.
  """
  workdir = os.path.abspath(workdir)
  slurm_options.check(cluster, workdir, dict(flags or {}), wait, max_retries)
  wait = wait or cluster == "debug"
  sweep = load_sweep(spec, workdir, seeds)
  o = resolve_options(dict(flags or {}), sweep.resources, cluster, sweep.config_path)
  if cluster == "local" and o.gpus_per_point:
    pool = _gpu_pool()
    if o.gpus_per_point * o.parallel > len(pool):
      raise SweepError(
        f"--gpus_per_point {o.gpus_per_point} × --array_parallelism "
        f"{o.parallel} needs {o.gpus_per_point * o.parallel} "
        f"GPU(s); this machine has {len(pool)}"
      )
  records = {p.slug: point_lib.read_json(os.path.join(p.workdir, JOB_FILE)) for p in sweep.points}
  refresh_slurm(r["job_id"] for r in records.values() if r and r.get("cluster") == "slurm")
  results, active, todo, unknown = {}, {}, [], []
  for p in sweep.points:
    ps = status.point_state(p.workdir, p.slug, p.steps, job_state)
    record = records[p.slug]
    state = job_state(record) if record else None
    if ps.state == "done" and not reanalyze:
      results[p.slug] = dict(point_lib.read_status(p.workdir), status="skipped")
    elif record and record.get("cluster") == "slurm" and state is None:
      active[p.slug] = _Handle(p, record)  # it may be alive: never twice
      unknown.append(
        f"{p.slug}: the state of job {record['job_id']} is unknown "
        "(sacct and squeue give no answer): not resubmitting it"
      )
    elif record and (
      ps.state == "running" or (ps.state == "pending" and state in ("pending", "running"))
    ):
      active[p.slug] = _Handle(p, record)
    else:
      todo.append(p)
  print_fn(
    f"sweep {sweep.title}: {len(sweep.points)} points, {len(results)} "
    f"already finished, {len(active)} running or queued, {len(todo)} to "
    f"submit (cluster {cluster}" + (f", {o.parallel} at a time)" if o.parallel else ")")
  )
  for line in unknown:
    print_fn(line)
  room = len(todo) if o.parallel is None or cluster == "slurm" else max(0, o.parallel - len(active))
  executor = None
  if todo and room:
    new = _first_submit(sweep, workdir, o, todo[:room], _busy_gpus(active.values()))
    executor = next(iter(new.values())).executor
    active.update(new)
    todo = todo[room:]
    if cluster != "debug":
      print_fn(
        f"submitted {len(new)} point(s) as {_array_ids(new.values())} "
        f"(cluster {cluster}); submitit's files in "
        f"{os.path.join(workdir, SUBMITIT_DIR)}"
      )
  os.makedirs(workdir, exist_ok=True)
  runner.write_sweep_file(
    sweep,
    workdir,
    {
      "name": "slurm",
      "cluster": cluster,
      "array_parallelism": o.parallel,
      "folder": os.path.join(workdir, SUBMITIT_DIR),
    },
  )
  if not wait:
    if todo:
      print_fn(
        f"{len(todo)} point(s) wait: the local cluster runs {o.parallel} "
        "at a time; the same command submits them later (or add --wait)"
      )
    if active:
      ids = _array_ids(active.values())
      for line in _follow_text(
        command
        or f"python -m experiments.sweep "
        f"--config {spec} --workdir {workdir} --launcher "
        f"slurm --cluster {cluster}",
        workdir,
        o,
        ids,
      ):
        print_fn(line)
    return None
  return _wait(sweep, workdir, o, executor, active, todo, results, max_retries, print_fn, poll_s)


def _first_submit(sweep, workdir, o, points, busy) -> dict[str, _Handle]:
  """The command's first submission: if sbatch refuses it, what it wrote is
  removed (the sweep directory, if this command made it, else ``S/slurm/``
  if it did), so that nothing is left that looks like a submitted sweep."""
  made = [d for d in (workdir, os.path.join(workdir, SUBMITIT_DIR)) if not os.path.exists(d)]
  try:
    handles = _submit(_executor(sweep, workdir, o), sweep, points, o, busy)
  except SweepError as e:
    if made:
      shutil.rmtree(made[0], ignore_errors=True)
    raise SweepError(f"{e}; nothing was submitted, the same command can run again") from e
  return handles


def _wait(
  sweep, workdir, o, executor, active, queue, results, max_retries, print_fn, poll_s
) -> list[dict]:
  """Waits for the active jobs, submitting the queued points as room frees
  (local cluster), resubmitting stopped points and retrying failed ones."""
  poll_s = poll_s or (30.0 if o.cluster == "slurm" else 1.0)
  total = len(active) + len(queue)
  t0, n, durations = time.time(), 0, []
  retries: dict[str, int] = collections.Counter()
  resubmits: dict[str, int] = collections.Counter()
  try:
    while active or queue:
      room = (
        len(queue)
        if o.parallel is None or o.cluster == "slurm"
        else max(0, o.parallel - len(active))
      )
      if queue and room:
        executor = executor or _executor(sweep, workdir, o)
        active.update(_submit(executor, sweep, queue[:room], o, _busy_gpus(active.values())))
        queue = queue[room:]
      if o.cluster == "debug":
        for h in active.values():
          h.job.wait()  # runs the point here, now
      else:
        time.sleep(poll_s)
        refresh_slurm(h.record["job_id"] for h in active.values() if o.cluster == "slurm")
      for slug, h in list(active.items()):
        state = h.state()
        if state in ("pending", "running") or (state is None and not _final(h)):
          continue  # alive, or Slurm cannot tell yet
        del active[slug]
        p = h.point
        ps = status.point_state(p.workdir, p.slug, p.steps, lambda r: "ended")
        cancelled = (point_lib.read_json(os.path.join(p.workdir, JOB_FILE)) or {}).get("cancelled")
        if ps.state == "failed" and retries[slug] < max_retries:
          retries[slug] += 1
          print_fn(
            f"{slug}: failed (exit {ps.returncode}: {ps.note}); retry "
            f"{retries[slug]} of {max_retries}"
          )
          queue.append(p)
          continue
        if (
          ps.state in ("stopped", "pending") and not cancelled and (resubmits[slug] < MAX_RESUBMITS)
        ):
          resubmits[slug] += 1
          print_fn(
            f"{slug}: stopped ({ps.note or f'exit {ps.returncode}'}); "
            f"resubmitting ({resubmits[slug]} of {MAX_RESUBMITS})"
          )
          queue.append(p)
          continue
        st = dict(point_lib.read_status(p.workdir) or {}, status=ps.state)
        st.setdefault("overrides", p.overrides)
        results[slug] = st
        n += 1
        elapsed = time.time() - t0
        durations.append(st.get("seconds") or elapsed)
        print_fn(
          runner.progress_line(
            n, total, p, st, elapsed, runner.eta(durations, total - n, o.parallel or total)
          )
        )
  except KeyboardInterrupt:
    if o.cluster == "slurm":
      print_fn(
        "stopped waiting; the jobs go on: follow them with "
        f"python -m experiments.sweep --workdir {workdir} --status"
      )
    raise
  return runner.finish(sweep, workdir, results, print_fn)


def _final(h: _Handle) -> bool:
  st = point_lib.read_status(h.point.workdir) or {}
  return st.get("job_id") == h.record["job_id"] and st.get("status") in (
    "done",
    "failed",
    "stopped",
  )


def _wait_pid(pid: int, timeout: float) -> bool:
  """Waits at most ``timeout`` s for ``pid`` to end; whether it did."""
  deadline = time.time() + timeout
  while status.pid_alive(pid):
    if time.time() > deadline:
      return False
    time.sleep(0.1)
  return True


def _kill(pid: int, sig: int) -> None:
  try:
    os.kill(pid, sig)
  except ProcessLookupError:
    pass


def _cancel_local(point_dir: str, record: dict) -> bool:
  """Stops a local job: SIGTERM to its running ``experiments.run`` (it saves
  its step and exits 75; the point is then ``stopped``), waiting for it and
  its task at most ``STOP_TIMEOUT_S`` s each, then SIGINT to submitit's
  controller (which kills what is left). Whether the point ended in time."""
  st = point_lib.read_status(point_dir) or {}
  ours = (
    st.get("job_id") == record["job_id"]
    and st.get("status") == "running"
    and st.get("host") == socket.gethostname()
  )
  ended = True
  if ours and st.get("run_pid") and status.pid_alive(int(st["run_pid"])):
    _kill(int(st["run_pid"]), signal.SIGTERM)
    ended = _wait_pid(int(st["run_pid"]), STOP_TIMEOUT_S)
  if ours and st.get("pid"):
    ended = _wait_pid(int(st["pid"]), STOP_TIMEOUT_S) and ended
  controller = int(record["job_id"])
  _kill(controller, signal.SIGINT)  # what submitit's LocalJob.cancel sends
  _wait_pid(controller, 10)
  return ended


def cancel(sweep_dir: str, print_fn: Callable[[str], None] = print) -> int:
  """Cancels every job of the sweep in ``sweep_dir`` not known to have ended
  (with Slurm, also those whose state sacct and squeue cannot tell): Slurm's
  scancel sends SIGTERM to a running point, which saves its step and exits
  75 if it can within the cluster's KillWait; a local job's point gets
  SIGTERM and is waited for. The next sweep command resubmits them. Nothing
  is marked cancelled until scancel has succeeded. Returns the number of
  jobs cancelled."""
  sweep_dir = os.path.abspath(sweep_dir)
  info = point_lib.read_json(os.path.join(sweep_dir, SWEEP_FILE))
  if not info:
    raise SweepError(
      f"{os.path.join(sweep_dir, SWEEP_FILE)} not found: is --workdir a sweep directory?"
    )
  if (info.get("launcher") or {}).get("name") != "slurm":
    raise SweepError(
      f"{sweep_dir} was run by the local launcher: stop it with "
      "Ctrl-C or SIGTERM to its sweep command"
    )
  state_of = job_states(sweep_dir)
  todo = []  # (point dir, job file, record)
  for p in info["points"]:
    point_dir = os.path.join(sweep_dir, p["slug"])
    path = os.path.join(point_dir, JOB_FILE)
    record = point_lib.read_json(path)
    if not record or record.get("cluster") not in ("slurm", "local"):
      continue
    if record["cluster"] == "slurm":
      alive = state_of(record) != "ended"  # None: it may be alive
    else:  # its controller, or the task still running the point
      alive = status.point_state(point_dir, p["slug"], None, state_of).state == "running"
    if alive:
      todo.append((point_dir, path, record))
  slurm_ids = [r["job_id"] for _, _, r in todo if r["cluster"] == "slurm"]
  if slurm_ids:
    if shutil.which("scancel") is None:
      raise SweepError("scancel is not on PATH: cancel from a machine of the cluster")
    r = subprocess.run(["scancel", *slurm_ids], capture_output=True, text=True)
    if r.returncode != 0:
      lines = [line.strip() for line in (r.stderr or r.stdout).splitlines() if line.strip()]
      raise SweepError(
        f"scancel {' '.join(slurm_ids)} failed (exit {r.returncode})"
        + (f": {lines[-1]}" if lines else "")
        + "; nothing was marked cancelled"
      )
  for point_dir, _, record in todo:
    if record["cluster"] == "local" and not _cancel_local(point_dir, record):
      print_fn(
        f"{os.path.basename(point_dir)}: still running {STOP_TIMEOUT_S} s "
        "after SIGTERM; its job was interrupted (the point resumes from "
        "its last checkpoint)"
      )
  for _, path, record in todo:
    point_lib.write_json(path, dict(record, cancelled=True))
  slugs = [os.path.basename(d) for d, _, _ in todo]
  if not todo:
    print_fn(f"nothing to cancel in {sweep_dir}: no job is pending, running or of unknown state")
  elif slurm_ids:
    print_fn(
      f"cancelled {len(todo)} job(s): {', '.join(slugs)}; Slurm sends "
      "SIGTERM to running points, which save their step if they can "
      "before its KillWait; the sweep command resubmits them"
    )
  else:
    print_fn(
      f"cancelled {len(todo)} job(s): {', '.join(slugs)}; running points "
      "got SIGTERM and ended (a training run saves its step first); the "
      "sweep command resubmits them"
    )
  return len(todo)
