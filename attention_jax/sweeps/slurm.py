"""The ``slurm`` launcher: a sweep's points as one job array through submitit, each task a
:class:`.slurm_job.PointJob` (:func:`.point.run_point`, as the local launcher), so the report
is the same whichever launcher ran them. Job states and cancellation go through submitit's jobs
and sacct watcher; added here is what submitit lacks: ``squeue`` for jobs sacct does not know,
a job neither can tell taken as alive (never submitted twice), the resubmission of stopped
points and retries of failed ones. Clusters: ``slurm``, ``local`` (submitit's local executor)
and ``debug`` (in this command). Layout and signals: docs/sweeps.md."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import submitit
from submitit.slurm.slurm import SlurmInfoWatcher

from attention_jax.errors import SweepError
from attention_jax.sweeps import point as point_lib
from attention_jax.sweeps import runner, slurm_job, status
from attention_jax.sweeps.point import JOB_FILE, SWEEP_FILE, Point, Sweep
from attention_jax.sweeps.slurm_job import SIGNAL_DELAY_S, STOP_TIMEOUT_S, Options, PointJob
from attention_jax.sweeps.spec import load_sweep

SUBMITIT_DIR = "slurm"  # S/slurm/<job id>_*
MAX_RESUBMITS = 3  # of a stopped point, by one waiting sweep command
MAX_NUM_TIMEOUT = 3  # requeues after a time limit, per job (submitit's max_num_timeout)
# Slurm states (the first word) of a job that is alive; any other has ended.
_PENDING = frozenset(
  "PENDING REQUEUED REQUEUE_HOLD REQUEUE_FED CONFIGURING RESV_DEL_HOLD SUSPENDED STOPPED "
  "SPECIAL_EXIT".split()
)
_RUNNING = frozenset("RUNNING COMPLETING STAGE_OUT SIGNALING RESIZING".split())
_STATES: dict[str, str] = {}  # job id -> state word, from the last refresh_slurm


@dataclasses.dataclass(frozen=True)
class Launch:
  """What one ``--launcher slurm`` command does besides submitting."""

  wait: bool = False  # wait for the points, resubmit, write the report (always on debug)
  max_retries: int = 0  # runs again of a point that failed for a reason of its own
  reanalyze: bool = False  # finished points run again (their analyses anew)
  poll_s: float | None = None  # between looks at the jobs (default 30 s; 1 s off Slurm)
  command: str | None = None  # the sweep command, for the lines that tell how to follow
  seeds: int | None = None  # --seeds N (each seed-run is one array task); None: the config's


def refresh_slurm(job_ids) -> None:
  """The states of ``job_ids``: one sacct call through submitit's watcher, then ``squeue`` for
  the jobs sacct does not know (it lags, or is down); neither: unknown (:func:`job_state`
  None)."""
  job_ids = sorted(set(job_ids))
  # A new watcher each time: submitit's shared one never asks again about a job it took for
  # ended (SUSPENDED, which resumes).
  watcher = SlurmInfoWatcher()
  for job_id in job_ids:
    _STATES.pop(job_id, None)
    watcher.register_job(job_id)
  if job_ids and shutil.which("sacct"):
    logger = logging.getLogger("submitit")  # a failed sacct: its warning; squeue answers next
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
      watcher.update()
    finally:
      logger.setLevel(level)
  for job_id in job_ids:
    if (state := watcher.get_state(job_id, mode="cache")) != "UNKNOWN":  # sacct said something
      _STATES[job_id] = state
  missing = [i for i in job_ids if i not in _STATES]
  if missing and shutil.which("squeue"):
    cmd = ["squeue", "-h", "-j", ",".join(missing), "-o", "%i|%T"]
    try:
      out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
      return
    if out.returncode == 0:  # squeue's ids as sacct's (arrays as 900_[4-7%2])
      info = SlurmInfoWatcher().read_info("JobID|State\n" + out.stdout)
      _STATES.update({i: info[i]["State"] for i in missing if info.get(i, {}).get("State")})


def job_state(record: dict, job=None) -> str | None:
  """``pending``, ``running``, ``ended`` or None (cannot tell) for a point's job record (with
  the submitit ``job`` if this process submitted it): on Slurm from the last
  :func:`refresh_slurm`; a local job lives while its submitit controller does."""
  cluster = record.get("cluster")
  if cluster == "slurm":
    word = (_STATES.get(record["job_id"], "").split() or [""])[0].upper()  # CANCELLED by 1
    if not word:
      return None
    return "pending" if word in _PENDING else "running" if word in _RUNNING else "ended"
  if cluster == "local" and job is not None:
    return "running" if job.state == "RUNNING" else "ended"
  if cluster == "local":  # a job of another command: its controller
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


def _records(sweep_dir: str, slugs) -> dict[str, dict | None]:
  """Each point's job record, the Slurm jobs' states refreshed (one sacct call)."""
  records = {s: point_lib.read_json(os.path.join(sweep_dir, s, JOB_FILE)) for s in slugs}
  refresh_slurm(r["job_id"] for r in records.values() if r and r.get("cluster") == "slurm")
  return records


def job_states(sweep_dir: str) -> status.JobState:
  """A ``job_state`` for :func:`status.status_lines`, Slurm's from one sacct call."""
  info = point_lib.read_json(os.path.join(sweep_dir, SWEEP_FILE)) or {}
  _records(sweep_dir, [p["slug"] for p in info.get("points", [])])
  return job_state


def executor_for(sweep: Sweep, workdir: str, options: Options) -> submitit.Executor:
  """submitit's executor of ``options.cluster``, with the points' resources (the local one
  with Slurm's notice before the time limit, which the AutoExecutor cannot pass)."""
  folder = os.path.join(workdir, SUBMITIT_DIR)
  if options.cluster == "debug":
    return submitit.DebugExecutor(folder)
  params: dict[str, Any] = {"nodes": options.nodes_per_point, "signal_delay_s": SIGNAL_DELAY_S}
  if options.cpus_per_point:
    params["cpus_per_task"] = options.cpus_per_point // options.tasks
  if options.cluster == "local":  # its GPUs: PointJob.local_gpus
    _undo_ignored_sigint()
    executor = submitit.LocalExecutor(folder, max_num_timeout=MAX_NUM_TIMEOUT)
    params.update(timeout_min=options.timeout_min, tasks_per_node=options.tasks_per_node)
  else:
    executor = submitit.SlurmExecutor(folder, max_num_timeout=MAX_NUM_TIMEOUT)
    name = os.path.splitext(os.path.basename(sweep.config_path))[0]
    params.update(job_name=f"sweep_{name}", time=options.timeout_min)
    params.update(ntasks_per_node=options.tasks_per_node)
    if options.gpus_per_point:
      params["gpus_per_node"] = options.gpus_per_point // options.nodes_per_point
    for key in ("partition", "account", "qos"):
      if value := getattr(options, f"slurm_{key}"):
        params[key] = value
    if options.array_parallelism:
      params["array_parallelism"] = options.array_parallelism
    if options.slurm_extra:
      params["additional_parameters"] = dict(options.slurm_extra)
  executor.update_parameters(**params)
  return executor


def _undo_ignored_sigint() -> None:
  """submitit stops a local job with SIGINT. A command started in the background ignores it,
  and so would every child (the jobs would never stop); a handled signal is reset to its
  default in a child, so handling it here undoes that."""
  if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclasses.dataclass
class _Handle:
  point: Point
  record: dict
  job: Any = None  # the submitit job, when this process submitted it

  def state(self) -> str | None:
    return job_state(self.record, self.job)

  def final(self) -> bool:
    """Whether the point's status says this job ended it."""
    st = point_lib.read_status(self.point.workdir) or {}
    ended = st.get("status") in ("done", "failed", "stopped")
    return ended and st.get("job_id") == self.record["job_id"]


def _local_gpus(points: list[Point], options: Options, busy: set[str]) -> list:
  """Each point's own ``gpus_per_point`` GPUs from the local cluster's, less ``busy`` (those of
  running local jobs); None for each without GPUs."""
  if options.cluster != "local" or not options.gpus_per_point:
    return [None] * len(points)
  free = [g for g in runner.gpu_ids() if g not in busy]
  n = options.gpus_per_point
  if len(free) < n * len(points):
    raise SweepError(
      f"--gpus_per_point {n}: {len(points)} point(s) need {n * len(points)} GPU(s), "
      f"{len(free)} free on this machine"
    )
  return [free[k * n : (k + 1) * n] for k in range(len(points))]


def _array_ids(handles) -> str:
  ids = [h.record["job_id"] for h in handles]
  arrays = sorted({i.split("_")[0] for i in ids if "_" in i})
  if len(arrays) == 1 and len(ids) > 1:
    return f"job array {arrays[0]}"
  return ("job " if len(ids) == 1 else "jobs ") + ", ".join(ids)


@dataclasses.dataclass
class _Launcher:
  """One sweep command's submissions and, with ``launch.wait``, its waiting."""

  sweep: Sweep
  workdir: str
  options: Options
  launch: Launch
  print_fn: Callable[[str], None]
  executor: Any = None  # made at the first submission

  def room(self, active: int, queued: int) -> int:
    """How many queued points to submit now (off Slurm, ``parallel`` at a time)."""
    if self.options.parallel is None or self.options.cluster == "slurm":
      return queued
    return max(0, self.options.parallel - active)

  def submit(self, points: list[Point], active: dict[str, _Handle]) -> dict[str, _Handle]:
    """Submits ``points`` as one job array, writes each one's ``sweep_job.json``."""
    options = self.options
    self.executor = self.executor or executor_for(self.sweep, self.workdir, options)
    jobs_on_host = (options.parallel or 1) * options.tasks if options.cluster == "local" else 1
    threads = options.cpus_per_point // options.tasks if options.cpus_per_point else None
    per_task = options.gpus_per_point // options.tasks
    gpus_per_task = per_task if options.tasks > options.nodes_per_point else 0
    busy = {g for h in active.values() for g in h.record.get("gpus") or ()}
    gpus = _local_gpus(points, options, busy)
    fns = [
      PointJob(self.sweep, p, jobs_on_host, threads, gpus_per_task, g)
      for p, g in zip(points, gpus, strict=True)
    ]
    try:
      jobs = self.executor.submit_array(fns)
    except (submitit.core.utils.FailedJobError, subprocess.CalledProcessError) as e:
      lines = [line.strip() for line in str(getattr(e, "stderr", None) or e).splitlines()]
      lines = [line for line in lines if line]
      raise SweepError(f"sbatch refused the job array: {lines[-1] if lines else e}") from e
    handles = {}
    for p, job, g in zip(points, jobs, gpus, strict=True):
      os.makedirs(p.workdir, exist_ok=True)
      record = {"job_id": str(job.job_id), "cluster": options.cluster, "submitted": time.time()}
      record.update(cancelled=False, folder=str(self.executor.folder), **({"gpus": g} if g else {}))
      point_lib.write_json(os.path.join(p.workdir, JOB_FILE), record)
      handles[p.slug] = _Handle(p, record, job)
    return handles

  def wait(self, active: dict[str, _Handle], queue: list[Point], results: dict) -> list[dict]:
    """Waits for the active jobs, submitting queued points as room frees (local cluster),
    resubmitting stopped points and retrying failed ones."""
    options, launch, print_fn = self.options, self.launch, self.print_fn
    poll_s = launch.poll_s or (30.0 if options.cluster == "slurm" else 1.0)
    total = len(active) + len(queue)
    progress = runner.Progress(total, options.parallel or total, print_fn)
    retries: dict[str, int] = collections.Counter()
    resubmits: dict[str, int] = collections.Counter()
    try:
      while active or queue:
        room = self.room(len(active), len(queue))
        if queue and room:
          active.update(self.submit(queue[:room], active))
          queue = queue[room:]
        if options.cluster == "debug":
          for h in active.values():
            h.job.wait()  # runs the point here, now
        else:
          time.sleep(poll_s)
          if options.cluster == "slurm":
            refresh_slurm(h.record["job_id"] for h in active.values())
        for slug, h in list(active.items()):
          state = h.state()
          if state in ("pending", "running") or (state is None and not h.final()):
            continue  # alive, or Slurm cannot tell yet
          del active[slug]
          p = h.point
          ps = status.point_state(p.workdir, p.slug, p.steps, lambda r: "ended")
          record = point_lib.read_json(os.path.join(p.workdir, JOB_FILE)) or {}
          stopped = ps.state in ("stopped", "pending") and not record.get("cancelled")
          if ps.state == "failed" and retries[slug] < launch.max_retries:
            retries[slug] += 1
            print_fn(
              f"{slug}: failed (exit {ps.returncode}: {ps.note}); retry "
              f"{retries[slug]} of {launch.max_retries}"
            )
            queue.append(p)
          elif stopped and resubmits[slug] < MAX_RESUBMITS:
            resubmits[slug] += 1
            print_fn(
              f"{slug}: stopped ({ps.note or f'exit {ps.returncode}'}); "
              f"resubmitting ({resubmits[slug]} of {MAX_RESUBMITS})"
            )
            queue.append(p)
          else:
            st = dict(point_lib.read_status(p.workdir) or {}, status=ps.state)
            results[slug] = dict({"overrides": p.overrides}, **st)
            progress(p, results[slug])
    except KeyboardInterrupt:
      if options.cluster == "slurm":
        follow = f"python -m experiments.sweep --workdir {self.workdir} --status"
        print_fn(f"stopped waiting; the jobs go on: follow them with {follow}")
      raise
    return runner.finish(self.sweep, self.workdir, print_fn, results)


def run_sweep(
  spec: str,
  workdir: str,
  cluster: str = "slurm",
  flags: dict[str, Any] | None = None,
  launch: Launch | None = None,
  print_fn: Callable[[str], None] = print,
) -> list[dict] | None:
  """Submits every point neither done nor running as one job array (``flags``: the resource
  flags given); with ``launch.wait`` (always on debug) waits, resubmits stopped points,
  retries failed ones, writes the report and returns one status per point (else None).
  SweepError before anything is written for a bad flag or config, or no Slurm."""
  workdir, launch, flags = os.path.abspath(workdir), launch or Launch(), dict(flags or {})
  slurm_job.check(cluster, workdir, flags, launch.wait, launch.max_retries)
  if cluster == "debug":
    launch = dataclasses.replace(launch, wait=True)
  sweep = load_sweep(spec, workdir, launch.seeds)
  options = slurm_job.merge_options(flags, sweep.resources, cluster, sweep.config_path)
  if cluster == "local" and options.gpus_per_point:
    have, need = len(runner.gpu_ids()), options.gpus_per_point * options.parallel
    if need > have:
      raise SweepError(
        f"--gpus_per_point {options.gpus_per_point} × --array_parallelism "
        f"{options.parallel} needs {need} GPU(s); this machine has {have}"
      )
  launcher = _Launcher(sweep, workdir, options, launch, print_fn)
  folder = os.path.join(workdir, SUBMITIT_DIR)
  records = _records(workdir, [p.slug for p in sweep.points])
  results, active, todo = {}, {}, []
  for p in sweep.points:
    ps = status.point_state(p.workdir, p.slug, p.steps, job_state)
    record = records[p.slug]
    state = job_state(record) if record else None
    if ps.state == "done" and not launch.reanalyze:
      results[p.slug] = dict(point_lib.read_status(p.workdir), status="skipped")
    elif record and record.get("cluster") == "slurm" and state is None:
      active[p.slug] = _Handle(p, record)  # it may be alive: never twice
    elif record and (
      ps.state == "running" or (ps.state == "pending" and state in ("pending", "running"))
    ):
      active[p.slug] = _Handle(p, record)
    else:
      todo.append(p)
  print_fn(
    f"sweep {sweep.title}: {len(sweep.points)} points, {len(results)} already finished, "
    f"{len(active)} running or queued, {len(todo)} to submit (cluster {cluster}"
    + (f", {options.parallel} at a time)" if options.parallel else ")")
  )
  for slug, h in active.items():
    if h.job is None and h.record.get("cluster") == "slurm" and h.state() is None:
      print_fn(
        f"{slug}: the state of job {h.record['job_id']} is unknown (sacct and squeue give no "
        "answer): not resubmitting it"
      )
  if todo and (room := launcher.room(len(active), len(todo))):
    made = next((d for d in (workdir, folder) if not os.path.exists(d)), None)
    try:
      new = launcher.submit(todo[:room], active)
    except SweepError as e:  # nothing may look like a submitted sweep
      if made:
        shutil.rmtree(made, ignore_errors=True)
      raise SweepError(f"{e}; nothing was submitted, the same command can run again") from e
    active.update(new)
    todo = todo[room:]
    if cluster != "debug":
      print_fn(
        f"submitted {len(new)} point(s) as {_array_ids(new.values())} (cluster {cluster}); "
        f"submitit's files in {folder}"
      )
  os.makedirs(workdir, exist_ok=True)
  info = {"name": "slurm", "cluster": cluster, "array_parallelism": options.parallel}
  runner.write_sweep_file(sweep, workdir, dict(info, folder=folder))
  if launch.wait:
    return launcher.wait(active, todo, results)
  if todo:
    print_fn(
      f"{len(todo)} point(s) wait: the local cluster runs {options.parallel} at a time; the "
      "same command submits them later (or add --wait)"
    )
  if active:
    command = launch.command or (
      f"python -m experiments.sweep --config {spec} --workdir {workdir} "
      f"--launcher slurm --cluster {cluster}"
    )
    ids = _array_ids(active.values())
    tail = f"tail -f {workdir}/<point>/sweep.log"
    for line in (
      f"  follow:  python -m experiments.sweep --workdir {workdir} --status",
      f"           squeue --me; sacct -j {ids.split()[-1]}; {tail}"
      if cluster == "slurm"
      else f"           {tail}",
      f"  wait:    {command} --wait   (submits only what is neither done "
      "nor running, then waits and writes the report)",
      f"  report:  {command} --report_only   (the points finished so far)",
      f"  cancel:  python -m experiments.sweep --workdir {workdir} --cancel",
    ):
      print_fn(line)
  return None


def _wait_pid(pid: int, timeout: float) -> bool:
  """Waits at most ``timeout`` s for ``pid`` to end; whether it did."""
  deadline = time.time() + timeout
  while status.pid_alive(pid):
    if time.time() > deadline:
      return False
    time.sleep(0.1)
  return True


def _kill(pid: int, sig: int) -> None:
  with contextlib.suppress(ProcessLookupError):
    os.kill(pid, sig)


def _cancel_local(point_dir: str, record: dict) -> bool:
  """Stops a local job of another command (submitit's ``LocalJob.cancel`` needs the process
  that submitted it): SIGTERM to its ``experiments.run`` (it saves its step, exits 75),
  waiting for it and its task, then SIGINT to submitit's controller. Whether it ended in
  time."""
  st = point_lib.read_status(point_dir) or {}
  ours = st.get("job_id") == record["job_id"] and st.get("status") == "running"
  ours = ours and st.get("host") == socket.gethostname()
  ended = True
  if ours and st.get("run_pid") and status.pid_alive(int(st["run_pid"])):
    _kill(int(st["run_pid"]), signal.SIGTERM)
    ended = _wait_pid(int(st["run_pid"]), STOP_TIMEOUT_S)
  if ours and st.get("pid"):
    ended = _wait_pid(int(st["pid"]), STOP_TIMEOUT_S) and ended
  _kill(int(record["job_id"]), signal.SIGINT)  # to submitit's controller, as LocalJob.cancel
  _wait_pid(int(record["job_id"]), 10)
  return ended


def cancel(sweep_dir: str, print_fn: Callable[[str], None] = print) -> int:
  """Cancels every job of the sweep in ``sweep_dir`` not known to have ended (Slurm: through
  submitit's ``job.cancel()``, marked cancelled once scancel succeeded; local: SIGTERM to its
  point, waited for); the next sweep command resubmits them. Returns how many."""
  sweep_dir = os.path.abspath(sweep_dir)
  info = point_lib.read_json(os.path.join(sweep_dir, SWEEP_FILE))
  if not info:
    path = os.path.join(sweep_dir, SWEEP_FILE)
    raise SweepError(f"{path} not found: is --workdir a sweep directory?")
  if (info.get("launcher") or {}).get("name") != "slurm":
    how = "stop it with Ctrl-C or SIGTERM to its sweep command"
    raise SweepError(f"{sweep_dir} was run by the local launcher: {how}")
  todo = []  # every job not known to have ended (on Slurm: None may be alive)
  for slug, record in _records(sweep_dir, [p["slug"] for p in info["points"]]).items():
    point_dir = os.path.join(sweep_dir, slug)
    if (record or {}).get("cluster") == "slurm" and job_state(record) != "ended":
      todo.append((point_dir, record))
    elif (record or {}).get("cluster") == "local":  # its controller, or the task running it
      if status.point_state(point_dir, slug, None, job_state).state == "running":
        todo.append((point_dir, record))
  slurm_ids = [r["job_id"] for _, r in todo if r["cluster"] == "slurm"]
  if slurm_ids and shutil.which("scancel") is None:
    raise SweepError("scancel is not on PATH: cancel from a machine of the cluster")
  cancelled, refused = [], {}
  for point_dir, record in todo:
    if record["cluster"] == "slurm":
      folder = record.get("folder") or os.path.join(sweep_dir, SUBMITIT_DIR)
      try:
        submitit.SlurmJob(folder, record["job_id"]).cancel(check=True)
      except subprocess.CalledProcessError as e:
        refused[record["job_id"]] = e.returncode
        continue
    elif not _cancel_local(point_dir, record):
      print_fn(
        f"{os.path.basename(point_dir)}: still running {STOP_TIMEOUT_S} s after SIGTERM; its "
        "job was interrupted (the point resumes from its last checkpoint)"
      )
    point_lib.write_json(os.path.join(point_dir, JOB_FILE), dict(record, cancelled=True))
    cancelled.append(os.path.basename(point_dir))
  if refused:
    codes = ", ".join(sorted({str(c) for c in refused.values()}))
    done = f"cancelled {', '.join(cancelled)}" if cancelled else "nothing was marked cancelled"
    raise SweepError(
      f"scancel {' '.join(refused)} failed (exit {codes}; its message is above); {done}"
    )
  if not todo:
    print_fn(f"nothing to cancel in {sweep_dir}: no job is pending, running or of unknown state")
    return 0
  how = (
    "Slurm sends SIGTERM to running points, which save their step if they can before its KillWait"
    if slurm_ids
    else "running points got SIGTERM and ended (a training run saves its step first)"
  )
  print_fn(
    f"cancelled {len(todo)} job(s): {', '.join(cancelled)}; {how}; the sweep command resubmits them"
  )
  return len(todo)
