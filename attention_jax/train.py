"""The training loop: ``train_and_evaluate(config, workdir)``.

The step it runs is :mod:`attention_jax.step` (pure, jitted); the directory it
writes is :mod:`attention_jax.workdir`'s. Running again on the same workdir
resumes the run from its latest checkpoint, including the data pipeline's
position, and writes the same rows an uninterrupted run would.

Guarantees (docs/reliability.md): one process per workdir (a lock); a resume
verifies the checkpoint's hashes and refuses a config that changes parameter
shapes or, without ``allow_config_change``, hyperparameters, before it touches
the workdir; a non-finite loss or gradient stops the run (or, with
``train.skip_nonfinite``, skips that update) and no non-finite state is ever
saved; SIGTERM finishes the step, saves it and raises :class:`Preempted` —
with several processes, SIGTERM to any one makes every process save the same
step and raise it. The checkpoint of the best dev BLEU is kept beside the
latest ones.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from attention_jax import checkpoint as checkpoint_lib
from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import environment, profiling, workdir_lock, writers
from attention_jax import faults as faults_lib
from attention_jax import sharding as sharding_lib
from attention_jax import step as step_lib
from attention_jax import workdir as workdir_lib
from attention_jax.errors import CheckpointError, ConfigError, NonFiniteError, Preempted


def train_and_evaluate(
  config, workdir: str, *, stop_after_step: int | None = None, allow_config_change: bool = False
) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint).

  ``stop_after_step`` ends the process's work after that step as a kill would
  (no extra checkpoint), for tests of resume. ``allow_config_change`` lets a
  resumed run change hyperparameters (not shapes); the changes are appended to
  ``config_changes.jsonl``. Returns the last eval metrics.

  Raises ConfigError/ResumeRefused (bad config, or one that cannot resume this
  workdir), WorkdirLockedError (another process holds it), CheckpointError
  (a checkpoint cannot be written, or is corrupt with
  ``checkpoint.on_corrupt=stop``), NonFiniteError, Preempted (SIGTERM).
  """
  config = config_lib.resolve(config)  # per-model values (a no-op if none)
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError(f"--workdir {workdir} exists and is not a directory")
  faults = faults_lib.from_env()
  # SIGTERM from here on (set-up and compilation included) ends the run with
  # Preempted after the step in progress, never in the middle of one.
  with _Preemption() as preemption:
    preemption.register(workdir_lib.checkpoint_dir(workdir))
    trainer = _Trainer(config, workdir, faults, preemption, allow_config_change)
    if jax.process_index() != 0:  # in a multi-process job the first holds the lock
      return trainer.run(stop_after_step)
    with workdir_lock.WorkdirLock(workdir):
      return trainer.run(stop_after_step)


# --------------------------------------------------------------------------
# The run


class _Trainer:
  """One call of :func:`train_and_evaluate`: checks, then the step loop."""

  def __init__(self, config, workdir: str, faults, preemption, allow_config_change: bool):
    self.config, self.workdir = config, workdir
    self.faults, self.preemption = faults, preemption
    self.allow_config_change = allow_config_change
    self.primary = jax.process_index() == 0  # one process writes the files
    self.ckpt = checkpoint_lib.Checkpointer(
      workdir_lib.checkpoint_dir(workdir),
      max_to_keep=config.checkpoint.max_to_keep,
      async_save=config.checkpoint.async_save,
    )
    self.ckpt.before_commit = faults.before_commit
    self.writer = None
    self.profiler = None

  def run(self, stop_after_step: int | None) -> dict[str, Any]:
    ok = False
    try:
      result = self._run(stop_after_step)
      ok = True
      return result
    finally:
      if ok:  # errors while closing (a save that failed late) propagate
        for thing in (self.profiler, self.writer, self.ckpt):
          if thing is not None:
            thing.close()
      else:
        _close_quietly(self.profiler, self.writer, self.ckpt)

  # ---- before the loop

  def _check(self):
    """The checks a resume must pass before anything in the workdir changes.
    Returns (latest step or None, corrupt steps, task, config changes)."""
    latest, corrupt = self.ckpt.select(self.config.checkpoint.on_corrupt)
    task = data_lib.build_task(self.config, self.workdir)  # saved vocabularies
    changes = []
    if latest is not None:
      changes = workdir_lib.check_resume(
        self.config, self.workdir, self.ckpt, latest, task, self.allow_config_change
      )
    return latest, corrupt, task, changes

  def _run(self, stop_after_step):
    config, workdir, ckpt = self.config, self.workdir, self.ckpt
    latest, corrupt, task, changes = self._check()
    # ---- from here on the workdir may change
    if self.primary:
      ckpt.prepare_for_writing(corrupt)
    # The other processes read or restore only once the directory is clean.
    checkpoint_lib.sync_processes(f"attention_jax_prepared_{latest}")
    if changes:
      logging.warning("resuming with config changes: %s", workdir_lib.format_changes(changes))
      if self.primary:
        workdir_lib.record_changes(workdir, latest, changes)
    total = config.train.steps
    if latest is not None and latest >= total:
      logging.info(
        "resumed from checkpoint at step %d in %s: training already "
        "finished (train.steps=%d); nothing to do",
        latest,
        workdir,
        total,
      )
      if changes and self.primary:
        workdir_lib.write_config(workdir, config)
      evals = [m for m in writers.read_metrics(workdir) if m["split"] == "eval"]
      return evals[-1] if evals else {}
    self._build(task)
    meta = self._start(latest)
    return self._loop(meta, latest, stop_after_step)

  def _build(self, task) -> None:
    """The mesh, the run, the jitted steps; writes config.json, vocabularies
    and appends this start's record to env.json."""
    config = self.config
    mesh = self.mesh = sharding_lib.make_mesh(config.train.num_devices)
    sharding_lib.check_batch_size(config.train.batch_size, mesh, "train.batch_size")
    # Evaluation pads its last batch anyway: round up to a multiple of devices.
    n_dev = mesh.devices.size
    self.eval_batch_size = -(-config.eval.batch_size // n_dev) * n_dev
    run = self.run_ = workdir_lib.build_run(config, self.workdir, task)
    if self.primary:
      workdir_lib.write_config(self.workdir, config)
      data_lib.save_task_files(run.task, self.workdir)
      environment.append(self.workdir)
    donate = (0,) if jax.default_backend() != "cpu" else ()
    rep, batch = sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)
    train_step = jax.jit(
      step_lib.make_train_step(
        run.graphdef,
        run.tx,
        run.schedule,
        config,
        run.objective,
        inject_nonfinite=self.faults.nonfinite_steps,
      ),
      in_shardings=(rep, batch),
      out_shardings=(rep, rep),
      donate_argnums=donate,
    )
    # Outputs replicated: every process reads every example's outputs (with
    # several processes a batch-sharded output is not addressable on one).
    eval_step = jax.jit(
      step_lib.make_eval_step(run.graphdef, run.objective, config),
      in_shardings=(rep, batch),
      out_shardings=rep,
    )
    self.train_step = lambda s, b: train_step(s, sharding_lib.put_batch(b, mesh))
    self.eval_step = lambda p, b: eval_step(p, sharding_lib.put_batch(b, mesh))
    self.eval_set = run.task.eval_set("eval")

  def _start(self, latest: int | None) -> dict[str, Any]:
    """Places (or restores) the state and the data position; opens the writer."""
    config, run = self.config, self.run_
    self.state = sharding_lib.put_replicated(run.state, self.mesh)
    self.train_iter = run.task.train_iterator()
    meta: dict[str, Any] = {}
    if latest is not None:
      self.state, meta = self.ckpt.restore(self.state, latest, verify=False)
      self.train_iter.set_state(meta["data"])
      logging.info("resumed from checkpoint at step %d in %s", latest, self.workdir)
    self.start = int(self.state.step)
    t = config.train
    if t.warmup_steps > t.steps:
      logging.warning(
        "train.warmup_steps (%d) > train.steps (%d): the warm-up is cut to %d steps",
        t.warmup_steps,
        t.steps,
        t.steps,
      )
    n_params = sum(x.size for x in jax.tree.leaves(self.state.params))
    logging.info(
      "model %s: %s parameters; training steps %d..%d on %s; "
      "data-parallel over %d device(s), %d process(es); compute dtype %s",
      config.model.name,
      f"{n_params:,}",
      self.start,
      t.steps,
      jax.devices()[0].platform,
      self.mesh.devices.size,
      jax.process_count(),
      t.compute_dtype,
    )
    # A run killed before its first checkpoint left rows: drop them too.
    metrics_path = os.path.join(self.workdir, "metrics.jsonl")
    resume_step = self.start if (latest is not None or os.path.exists(metrics_path)) else None
    self.writer = (
      writers.MetricWriter(self.workdir, resume_step=resume_step)
      if self.primary
      else writers.NullWriter()
    )
    self.progress = writers.Progress(t.steps, self.start)
    self.profiler = profiling.StepProfiler(
      profiling.parse_window(t.profile_steps), writers.tb_dir(self.workdir)
    )
    # Measurements since the last train row; saved with each checkpoint so a
    # resumed run writes the same rows as an uninterrupted one.
    self.pending: list[tuple[int, dict]] = [
      (s, {k: _decode(v) for k, v in m.items()}) for s, m in meta.get("pending", [])
    ]
    self.monitor = _NonFiniteMonitor(config, self.ckpt, self.start, meta.get("counters", {}))
    self.best = _BestEval(meta.get("best"))
    self.ckpt.keep = self.best.steps()
    return meta

  # ---- the loop

  def _loop(self, meta, latest, stop_after_step) -> dict[str, Any]:
    c, total = self.config, self.config.train.steps
    last_eval: dict[str, Any] = {}
    for step in range(self.start + 1, total + 1):
      if self.preemption.requested:  # before the first step: nothing new to save
        done = (
          f"checkpoint step {self.start} in {self.ckpt.directory} holds every step"
          if latest is not None
          else "no step was done"
        )
        raise Preempted(f"stopped by SIGTERM before step {step}; {done}")
      batch = next(self.train_iter)
      self.progress.add_tokens(self.run_.task.count_tokens(batch))
      with self.profiler.step(step, lambda: self.state):
        self.state, measurements = self.train_step(self.state, batch)
      self.pending.append((step, measurements))
      self.faults.after_step(step)
      last = step == total
      if step % c.train.log_every_steps == 0 or last:
        self._log(step)
      new_best = False
      if step % c.eval.every_steps == 0 or last:
        last_eval = self._evaluate(step)
        new_best = self.best.update(step, last_eval)
        if new_best:
          logging.info(
            "best dev %s so far: %.4f at step %d (its checkpoint is kept: --step best)",
            self.best.metric,
            self.best.record[self.best.metric],
            step,
          )
      stop = self.preemption.stop_after(step)  # every step, on every process
      if step % c.checkpoint.every_steps == 0 or last or stop or new_best:
        self._save(step)
      if stop:
        self.ckpt.wait_until_finished()
        raise Preempted(
          f"stopped by SIGTERM after step {step}: checkpoint step {step} "
          f"saved in {self.ckpt.directory}; run the same command again to resume"
        )
      if step == stop_after_step:
        logging.info("stopping after step %d as asked", step)
        break
    if stop_after_step is None or stop_after_step >= total:
      self.ckpt.wait_until_finished()
      self.writer.hparams(c, last_eval)
      logging.info("finished: step %d, checkpoints in %s", total, self.ckpt.directory)
    return last_eval

  def _log(self, step: int) -> None:
    """One ``train`` row: the mean of the finite steps since the last row."""
    pending = self.pending = jax.device_get(self.pending)
    self.monitor.check(pending)
    rates = self.progress.report(step)
    finite = [m for _, m in pending if bool(m["finite"])] or [m for _, m in pending]
    row = {k: _mean([m[k] for m in finite]) for k in pending[-1][1] if k != "finite"}
    row["learning_rate"] = float(pending[-1][1]["learning_rate"])
    if self.config.train.skip_nonfinite:
      row["skipped_steps"] = self.monitor.skipped
    row.update(rates)
    self.writer.write(step, "train", row)
    logging.info(self.progress.line(step, row["loss"], rates))
    self.pending = []

  def _evaluate(self, step: int) -> dict[str, Any]:
    """One ``eval`` row on the eval split (not counted as training time)."""
    t0 = time.perf_counter()
    row = step_lib.evaluate(
      self.eval_step, self.run_.objective, self.state.params, self.eval_set, self.eval_batch_size
    )
    self.writer.write(step, "eval", row)
    logging.info(
      "eval at step %d: %s (%.1fs)",
      step,
      "  ".join(f"{k} {v:.4f}" for k, v in row.items() if not isinstance(v, str)),
      time.perf_counter() - t0,
    )
    self.progress.report(step)
    return row

  def _save(self, step: int) -> None:
    """Checkpoints ``step`` with the data position and host counters; never a
    non-finite state."""
    self.pending = jax.device_get(self.pending)
    self.monitor.check(self.pending)
    if not bool(step_lib.all_finite(self.state)):
      raise NonFiniteError(
        f"the train state is not finite at step {step}; {self.monitor.last_good()}"
      )
    self.ckpt.wait_until_finished()  # the previous save, before any fault
    self.faults.before_save(step)
    self.ckpt.keep = self.best.steps()
    self.ckpt.save(
      step,
      self.state,
      {
        "data": self.train_iter.get_state(),
        "pending": [[s, {k: _encode(v) for k, v in m.items()}] for s, m in self.pending],
        "counters": self.monitor.counters(),
        "best": self.best.record,
      },
    )


def _encode(v):
  """A host measurement as JSON (non-finite floats as strings)."""
  v = np.asarray(v).item()
  if isinstance(v, float) and not np.isfinite(v):
    return repr(v)
  return v


def _decode(v):
  return float(v) if isinstance(v, str) else v


def _mean(values) -> float:
  return float(np.mean(np.asarray(values, np.float64)))


def _close_quietly(*things) -> None:
  """Closes after an error without masking it (a full disk fails here too)."""
  for thing in things:
    if thing is None:
      continue
    try:
      thing.close()
    except Exception as e:  # noqa: BLE001 - must not mask the error being handled
      logging.warning("while closing after an error: %s: %s", type(e).__name__, e)


# --------------------------------------------------------------------------
# Preemption, non-finite steps, the best evaluation


class _Preemption:
  """Whether SIGTERM asked the run to stop after a step, and after which.

  One process: while active, a Python handler sets ``requested`` instead of
  ending the process; the step in progress is finished and saved.

  Several processes: ``jax.distributed.initialize`` installed JAX's
  preemption notifier, which catches SIGTERM in any process (a Python handler
  here would replace it, so none is installed); :meth:`stop_after`, asked at
  every step, is True at one step agreed by all processes
  (``checkpoint.reached_preemption``), so all save that step. :meth:`register`
  tells the agreement the step a run starts from, before any work.
  """

  def __init__(self):
    self.multi = jax.process_count() > 1
    self.requested = False
    self._old = None

  def register(self, checkpoint_dir: str) -> None:
    """Several processes: reports the step this run resumes from (the newest
    committed checkpoint, 0 if none) so that a SIGTERM arriving during
    start-up picks a step ahead of it. Raises Preempted if that step is
    already the agreed one."""
    if not self.multi:
      return
    latest = checkpoint_lib.Checkpointer(checkpoint_dir, create=False).latest_step()
    if checkpoint_lib.reached_preemption(latest or 0):
      raise Preempted(
        f"stopped by SIGTERM before step {(latest or 0) + 1}; no step was done in this run"
      )

  def stop_after(self, step: int) -> bool:
    """Whether to save ``step`` and stop. Call once per step, in order."""
    if self.multi:
      self.requested = checkpoint_lib.reached_preemption(step)
    return self.requested

  def _handle(self, signum, frame):
    del frame
    if not self.requested:
      logging.warning(
        "received signal %d: finishing the current step, then saving a checkpoint and exiting",
        signum,
      )
    self.requested = True

  def __enter__(self):
    if self.multi:
      return self
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: cannot handle signals here
      self._old = None
    return self

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


class _NonFiniteMonitor:
  """Checks each step's measurements once, in step order."""

  def __init__(self, config, ckpt, checked_through: int, counters: dict):
    self.skip = bool(config.train.skip_nonfinite)
    self.limit = config.train.max_consecutive_nonfinite
    self.ckpt = ckpt
    self.checked_through = checked_through
    self.skipped = int(counters.get("skipped_steps", 0))
    self.in_a_row = int(counters.get("consecutive_nonfinite", 0))

  def counters(self) -> dict:
    return {"skipped_steps": self.skipped, "consecutive_nonfinite": self.in_a_row}

  def last_good(self) -> str:
    try:
      self.ckpt.wait_until_finished()
    except CheckpointError as e:
      logging.error("%s", e)
    last = self.ckpt.latest_step()
    return (
      f"last good checkpoint: {'none' if last is None else f'step {last}'} in {self.ckpt.directory}"
    )

  def check(self, pending) -> None:
    for step, m in pending:
      if step <= self.checked_through:
        continue
      self.checked_through = step
      if bool(m["finite"]):
        self.in_a_row = 0
        continue
      bad = [
        k
        for k in ("loss", "grad_norm", "update_norm", "param_norm")
        if not np.isfinite(float(m[k]))
      ]
      what = ", ".join(f"{k} became {float(m[k])}" for k in bad)
      if not self.skip:
        raise NonFiniteError(f"{what} at step {step}; {self.last_good()}")
      self.skipped += 1
      self.in_a_row += 1
      logging.warning(
        "step %d skipped (%s): %d in a row, %d in all", step, what, self.in_a_row, self.skipped
      )
      if self.in_a_row >= self.limit:
        raise NonFiniteError(
          f"{what} at step {step}: {self.in_a_row} non-finite steps in a row "
          f"(train.max_consecutive_nonfinite={self.limit}); "
          f"{self.last_good()}"
        )


class _BestEval:
  """The evaluation with the highest dev BLEU so far. Its step is saved as a
  checkpoint and kept beside the latest ones (``Checkpointer.keep``); the
  record travels in every checkpoint's meta, so a resumed run keeps it and
  ``--step best`` finds it (``Checkpointer.best_step``)."""

  metric = "bleu"

  def __init__(self, record: dict | None):
    self.record = dict(record) if record else None

  def steps(self) -> set[int]:
    return {int(self.record["step"])} if self.record else set()

  def update(self, step: int, row: dict) -> bool:
    """Whether ``row`` (an eval row) is a new best (strictly higher)."""
    value = row.get(self.metric)
    if (
      isinstance(value, str)
      or value is None
      or not np.isfinite(value)
      or (self.record is not None and value <= self.record[self.metric])
    ):
      return False
    self.record = {"step": int(step), self.metric: float(value)}
    return True
