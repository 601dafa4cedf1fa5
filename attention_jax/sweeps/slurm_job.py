"""What a Slurm sweep's array task runs, :class:`PointJob` (submitit pickles it into
``S/slurm/``: the point's overrides and paths, no config, no arrays), and the resources it runs
with, :class:`Options` (flags over the config's ``SLURM`` over the defaults), checked before
anything is written. Imports neither jax nor a config: a task, and ``experiments.sweep``'s
checks, start at once."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import threading
import time
from typing import Any

import submitit

from attention_jax.errors import SweepError
from attention_jax.sweeps import point as point_lib
from attention_jax.sweeps.point import Point, Sweep

CLUSTERS = ("slurm", "local", "debug")
NOT_SHARED = ("/tmp",)  # directories a cluster's nodes do not share
# The notice, in seconds, that a job gets (USR2) before its time limit:
# submitit's signal_delay_s on both clusters (``#SBATCH --signal=USR2@90``).
SIGNAL_DELAY_S = 90
# How long a point may take to save its step after SIGTERM (then SIGKILL):
# within the scheduler's notice before a job's time limit.
STOP_TIMEOUT_S = SIGNAL_DELAY_S - 10
COORDINATOR_FILE = "sweep_coordinator.json"  # S/<slug>/: task 0's address
TASK_LOG = "sweep.task{rank}.log"  # S/<slug>/: the output of task k > 0
COORDINATOR_WAIT_S = 600
_WHY = {
  "debug": "each point runs inside this command, one after another",
  "local": "submitit's local executor: one node, this machine",
}
SLURM_ONLY = ("slurm_partition", "slurm_account", "slurm_qos", "slurm_extra", "nodes_per_point")


@dataclasses.dataclass(frozen=True)
class Options:
  """Where and how the points run (flags over the config's ``SLURM``)."""

  cluster: str = "slurm"
  slurm_partition: str | None = None
  slurm_account: str | None = None
  slurm_qos: str | None = None
  slurm_extra: dict = dataclasses.field(default_factory=dict)
  gpus_per_point: int = 0
  cpus_per_point: int | None = None
  timeout_min: int = 60
  array_parallelism: int | None = None
  nodes_per_point: int = 1
  tasks_per_node: int = 1

  @property
  def tasks(self) -> int:
    return self.nodes_per_point * self.tasks_per_node

  @property
  def parallel(self) -> int | None:
    """Points at once: the array's cap (on the local cluster default 1; debug: 1)."""
    if self.cluster == "slurm":
      return self.array_parallelism
    return 1 if self.cluster == "debug" else self.array_parallelism or 1


# Resources of each point: flag name -> default (the fields of Options).
RESOURCES: dict[str, Any] = {
  f.name: f.default_factory() if f.default is dataclasses.MISSING else f.default
  for f in dataclasses.fields(Options)
  if f.name != "cluster"
}


def merge_options(flags: dict, config_resources: dict, cluster="slurm", where="config") -> Options:
  """Options from the flags given (name -> value) over the config's ``SLURM`` dict over
  :data:`RESOURCES`; SweepError (one line naming the flag or key) for an unknown key, a bad
  value, or a flag that would do nothing on ``cluster``."""
  if cluster not in CLUSTERS:
    raise SweepError(f"--cluster {cluster!r}: expected one of {', '.join(CLUSTERS)}")
  for key in config_resources:
    if key not in RESOURCES:
      raise SweepError(f"{where}: SLURM key {key!r} unknown; known: {', '.join(RESOURCES)}")
  for name in flags:
    if name not in RESOURCES:
      raise SweepError(f"--{name} is not a resource flag")
    if cluster == "debug" or (cluster == "local" and name in SLURM_ONLY):
      raise SweepError(f"--{name} does nothing with --cluster {cluster} ({_WHY[cluster]})")
  values, origin = dict(RESOURCES), {k: f"--{k}" for k in RESOURCES}
  for key, value in config_resources.items():
    if cluster == "slurm" or key not in SLURM_ONLY:  # a cluster's names: Slurm only
      values[key], origin[key] = value, f"{where}: SLURM[{key!r}]"
  values.update(flags)
  for f in dataclasses.fields(Options):
    v, key = values.get(f.name), f.name
    if "int" in f.type and not (v is None and "None" in f.type):
      low = 0 if f.default == 0 else 1  # GPUs may be none
      if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise SweepError(f"{origin[key]} is {v!r}: expected an integer >= {low}")
    if f.type == "str | None" and v is not None and not (isinstance(v, str) and v):
      raise SweepError(f"{origin[key]} is {v!r}: expected a name")
  extra = values["slurm_extra"]  # ["mem=32G", "constraint=a100"] (--slurm_extra), or a dict
  if not isinstance(extra, dict):
    pairs = [str(item).partition("=") for item in extra or ()]
    if bad := [k + s + v for k, s, v in pairs if not s or not k.strip()]:
      raise SweepError(
        f"--slurm_extra {bad[0]!r}: expected KEY=VALUE (an sbatch option, e.g. mem=32G)"
      )
    extra = {k.strip(): v.strip() for k, _, v in pairs}
  values["slurm_extra"] = {str(k): str(v) for k, v in extra.items()}
  options = Options(cluster=cluster, **values)
  gpus, nodes, per_node = options.gpus_per_point, options.nodes_per_point, options.tasks_per_node
  if cluster != "debug" and options.timeout_min * 60 <= SIGNAL_DELAY_S:
    raise SweepError(
      f"{origin['timeout_min']} is {options.timeout_min}: the points get their save signal "
      f"{SIGNAL_DELAY_S} s before the time limit; expected >= {SIGNAL_DELAY_S // 60 + 1}"
    )
  if gpus % nodes:
    raise SweepError(f"--gpus_per_point {gpus} is not divisible by --nodes_per_point {nodes}")
  if gpus and (gpus // nodes) % per_node:
    raise SweepError(
      f"--gpus_per_point {gpus} on {nodes} node(s) does not split evenly over "
      f"--tasks_per_node {per_node}"
    )
  if options.cpus_per_point and options.cpus_per_point % options.tasks:
    raise SweepError(
      f"--cpus_per_point {options.cpus_per_point} does not split evenly "
      f"over the point's {options.tasks} task(s)"
    )
  return options


def check_environment(cluster: str, workdir: str) -> None:
  """Refuses a Slurm sweep without Slurm or in a directory the nodes cannot share."""
  if cluster == "slurm" and shutil.which("sbatch") is None:
    raise SweepError(
      "--launcher slurm: no Slurm on this machine (sbatch is not on PATH); add --cluster local "
      "to run the job array here through submitit, or use --launcher local"
    )
  real = os.path.realpath(workdir)
  for local in NOT_SHARED if cluster == "slurm" else ():
    if real == local or real.startswith(local + os.sep):
      raise SweepError(
        f"--workdir {workdir} is under {local}, which the cluster's nodes do not share; put "
        "the sweep on a shared filesystem"
      )


def check(cluster: str, workdir: str, flags: dict[str, Any], wait: bool, max_retries: int) -> None:
  """Every check that needs no config file (the cluster, the machine, the flags given,
  ``--max_retries``): SweepError, one line."""
  merge_options(flags, {}, cluster)
  check_environment(cluster, workdir)
  if max_retries < 0:
    raise SweepError(f"--max_retries must be >= 0, got {max_retries}")
  if max_retries and not (wait or cluster == "debug"):
    raise SweepError(
      "--max_retries needs --wait with --launcher slurm (the waiting command resubmits a "
      "failed point)"
    )


def _job(env) -> dict:
  return {"job_id": env.job_id, "cluster": env.cluster}


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("", 0))
    return s.getsockname()[1]


class PointJob(submitit.helpers.Checkpointable):
  """One point as one job of the array, called by each of its tasks: task 0 runs the point
  (:func:`point_lib.run_point`), task k > 0 its own ``experiments.run`` process of the same
  training (``jax.distributed``), in a thread (the main thread is submitit's signals')."""

  def __init__(
    self,
    sweep: Sweep,
    point: Point,
    jobs_on_host: int = 1,
    threads: int | None = None,
    gpus_per_task: int = 0,
    local_gpus: list[str] | None = None,
  ):
    self.sweep = dataclasses.replace(sweep, points=[point], report={}, resources={})
    self.point = point
    self.jobs_on_host = jobs_on_host  # points (× tasks) sharing a host's cores
    self.threads = threads  # CPU threads of each process, if known
    self.gpus_per_task = gpus_per_task
    # The local cluster (whose executor sets every job's CUDA_VISIBLE_DEVICES to its first
    # GPUs, or ""): the GPUs the sweep gave this point, or the sweep command's own setting.
    self.local_gpus = local_gpus
    self.local_visible = os.environ.get("CUDA_VISIBLE_DEVICES")

  def __getstate__(self):  # the running thread's event stays out of the pickle
    return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

  def __call__(self) -> dict:
    env = submitit.JobEnvironment()
    point_lib.STOPPING.clear()
    self._finished = threading.Event()
    result: dict = {}

    def work():
      try:
        result["status"] = self._run(env)
      except Exception as e:  # noqa: BLE001 - the launcher's own failure, recorded
        message = f"{type(e).__name__}: {' '.join(str(e).split())}"
        result["status"] = {"status": "failed", "error": message}
        if env.global_rank == 0:
          result["status"] = point_lib.record_failure(self.point, message, _job(env))
      finally:
        self._finished.set()

    threading.Thread(target=work, daemon=True).start()
    try:
      while not self._finished.wait(0.5):
        pass
    except KeyboardInterrupt:  # Ctrl-C (debug cluster); a local job cancelled
      self._stop()
      raise
    return result["status"]

  def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
    """submitit's USR2 handler (``SIGNAL_DELAY_S`` before the time limit): the running
    ``experiments.run`` saves its step and exits 75, submitit requeues the job, it resumes."""
    self._stop()
    with contextlib.suppress(OSError):
      os.remove(os.path.join(self.point.workdir, COORDINATOR_FILE))
    return super().checkpoint(*args, **kwargs)

  def _stop(self) -> None:
    point_lib.stop_children(STOP_TIMEOUT_S)
    finished = getattr(self, "_finished", None)
    if finished is not None:
      finished.wait(STOP_TIMEOUT_S)

  def env(self, env) -> dict[str, str]:
    """This task's environment (``env``: submitit's JobEnvironment): threads,
    ``jax.distributed`` and its GPUs."""
    penv = point_lib.point_env(self.jobs_on_host, None, 0, threads=self.threads)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env.cluster == "local":
      visible = ",".join(self.local_gpus) if self.local_gpus else self.local_visible
      if visible is None:
        penv.pop("CUDA_VISIBLE_DEVICES", None)
      else:
        penv["CUDA_VISIBLE_DEVICES"] = visible
    if env.num_tasks > 1:
      penv.update(self._distributed_env(env))
    if self.gpus_per_task and env.num_tasks > env.num_nodes:
      per_node = self.gpus_per_task * (env.num_tasks // env.num_nodes)
      ids = visible.split(",") if visible else [str(i) for i in range(per_node)]
      k, g = env.local_rank, self.gpus_per_task
      penv["CUDA_VISIBLE_DEVICES"] = ",".join(ids[k * g : (k + 1) * g])
    return penv

  def _run(self, env) -> dict:
    penv = self.env(env)
    if env.global_rank == 0:
      return point_lib.run_point(self.sweep, self.point, penv, job=_job(env))
    log_path = os.path.join(self.point.workdir, TASK_LOG.format(rank=env.global_rank))
    cmd = point_lib.train_command(self.sweep, self.point)
    with open(log_path, "a", encoding="utf-8") as log:
      rc = point_lib.run_command(cmd, self.sweep.cwd, penv, log)
    return {"status": "done" if rc == 0 else "failed", "returncode": rc, "task": env.global_rank}

  def _distributed_env(self, env) -> dict[str, str]:
    """``JAX_*`` of this task; task 0 picks the coordinator's free port."""
    path = os.path.join(self.point.workdir, COORDINATOR_FILE)
    launch = f"{env.job_id}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    if env.global_rank == 0:
      os.makedirs(self.point.workdir, exist_ok=True)
      host = "127.0.0.1" if env.num_nodes == 1 else socket.gethostname()
      record = {"launch": launch, "address": f"{host}:{_free_port()}"}
      point_lib.write_json(path, record)
    else:
      deadline = time.time() + COORDINATOR_WAIT_S
      while True:
        record = point_lib.read_json(path)
        if record and record.get("launch") == launch:
          break
        if time.time() > deadline:
          rank, wait = env.global_rank, COORDINATOR_WAIT_S
          raise SweepError(f"task {rank}: no coordinator address in {path} after {wait} s")
        time.sleep(0.2)
    return {
      "JAX_COORDINATOR_ADDRESS": record["address"],
      "JAX_NUM_PROCESSES": str(env.num_tasks),
      "JAX_PROCESS_ID": str(env.global_rank),
    }
