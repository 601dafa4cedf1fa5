"""The job a task of a Slurm sweep's job array runs: :class:`PointJob`.

This is what submitit pickles into the sweep folder (``S/slurm/``) and loads
in each task: the point's overrides and paths and a few numbers, no config
object, no arrays. It imports neither jax nor a config (only submitit and
:mod:`attention_jax.sweeps.point`), so a task that supervises its point's
subprocesses starts at once; the launcher is :mod:`attention_jax.sweeps.slurm`.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time

import submitit

from attention_jax.errors import SweepError
from attention_jax.sweeps import point as point_lib
from attention_jax.sweeps.point import Point, Sweep
from attention_jax.sweeps.slurm_options import SIGNAL_DELAY_S

COORDINATOR_FILE = "sweep_coordinator.json"  # S/<slug>/: task 0's address
TASK_LOG = "sweep.task{rank}.log"  # S/<slug>/: the output of task k > 0
# How long a point may take to save its step after SIGTERM (then SIGKILL):
# within the scheduler's notice before a job's time limit.
STOP_TIMEOUT_S = SIGNAL_DELAY_S - 10
COORDINATOR_WAIT_S = 600


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("", 0))
    return s.getsockname()[1]


class PointJob(submitit.helpers.Checkpointable):
  """One point as one job of the array: what submitit pickles (the point's
  overrides and paths, a few numbers; no config object, no arrays).

  Every task of the job calls it. Task 0 runs the point
  (:func:`point_lib.run_point`: training, then the analyses); task k > 0 runs
  its own ``experiments.run`` process of the same training
  (``jax.distributed``). The commands run in a thread, so that this process's
  main thread stays free for submitit's signal handlers.
  """

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
    # The local cluster (submitit's local executor sets CUDA_VISIBLE_DEVICES
    # of every job to its first GPUs, or to "" without GPUs): the GPUs this
    # point was given by the sweep, or the sweep command's own setting.
    self.local_gpus = local_gpus
    self.local_visible = os.environ.get("CUDA_VISIBLE_DEVICES")

  def __getstate__(self):  # the running thread's event stays out of the pickle
    return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

  def __call__(self) -> dict:
    env = submitit.JobEnvironment()
    point_lib.reset_stop()
    self._finished = threading.Event()
    result: dict = {}

    def work():
      try:
        result["status"] = self._run(env)
      except Exception as e:  # noqa: BLE001 - the launcher's own failure, recorded
        message = f"{type(e).__name__}: {' '.join(str(e).split())}"
        result["status"] = (
          point_lib.record_failure(self.point, message, self._job(env))
          if env.global_rank == 0
          else {"status": "failed", "error": message}
        )
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
    """submitit's USR2 handler, in task 0: Slurm sends USR2 ``SIGNAL_DELAY_S``
    before the time limit (and on preemption only where the cluster sets
    ``preempt_send_user_signal``); the running ``experiments.run`` saves its
    step and exits 75, then submitit requeues the same job (after a time
    limit at most ``max_num_timeout`` times), which resumes from that
    checkpoint."""
    self._stop()
    try:
      os.remove(os.path.join(self.point.workdir, COORDINATOR_FILE))
    except OSError:
      pass
    return super().checkpoint(*args, **kwargs)

  def _stop(self) -> None:
    point_lib.stop_children(STOP_TIMEOUT_S)
    finished = getattr(self, "_finished", None)
    if finished is not None:
      finished.wait(STOP_TIMEOUT_S)

  @staticmethod
  def _job(env) -> dict:
    return {"job_id": env.job_id, "cluster": env.cluster}

  def env(self, env) -> dict[str, str]:
    """The environment of this task's ``experiments.run`` (``env``: submitit's
    JobEnvironment): threads, ``jax.distributed`` and its GPUs."""
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
      return point_lib.run_point(self.sweep, self.point, penv, job=self._job(env))
    log_path = os.path.join(self.point.workdir, TASK_LOG.format(rank=env.global_rank))
    with open(log_path, "a", encoding="utf-8") as log:
      rc = point_lib.run_command(
        point_lib.train_command(self.sweep, self.point), self.sweep.cwd, penv, log
      )
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
          raise SweepError(
            f"task {env.global_rank}: no coordinator address in {path} after {COORDINATOR_WAIT_S} s"
          )
        time.sleep(0.2)
    return {
      "JAX_COORDINATOR_ADDRESS": record["address"],
      "JAX_NUM_PROCESSES": str(env.num_tasks),
      "JAX_PROCESS_ID": str(env.global_rank),
    }
