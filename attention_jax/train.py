"""The training loop: ``train_and_evaluate(config, workdir)``.

The step it runs is :mod:`attention_jax.step` (pure, jitted); the directory it writes is
:mod:`attention_jax.workdir`'s. Running again on the same workdir resumes from the latest
checkpoint, data pipeline included, and writes the same rows an uninterrupted run would.
Starting is transactional (config, checkpoint, data and vocabularies are checked before the
workdir changes); what it promises on kills, signals, non-finite values and corrupt
checkpoints: docs/reliability.md#guarantees.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from attention_jax import checkpoint as checkpoint_lib
from attention_jax import data as data_lib
from attention_jax import environment, profiling, validation, workdir_lock, writers
from attention_jax import faults as faults_lib
from attention_jax import sharding as sharding_lib
from attention_jax import step as step_lib
from attention_jax import workdir as workdir_lib
from attention_jax.errors import CheckpointError, Interrupted, NonFiniteError, Preempted


def train_and_evaluate(
  config,
  workdir: str,
  *,
  stop_after_step: int | None = None,
  allow_config_change: bool = False,
  allow_data_change: bool = False,
) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming if it holds a checkpoint).

  ``stop_after_step`` ends the process's work after that step as a kill would
  (no extra checkpoint), for tests of resume. ``allow_config_change`` lets a
  resumed run change hyperparameters (not shapes); the changes are appended to
  ``config_changes.jsonl``. ``allow_data_change`` lets it continue on data
  files whose bytes changed (logged there too). Returns the last eval metrics.

  Raises ConfigError/ResumeRefused (bad config, or one that cannot resume this
  workdir), WorkdirLockedError (another process holds it), CheckpointError
  (a checkpoint cannot be written, or is corrupt with
  ``checkpoint.on_corrupt=stop``), NonFiniteError, Preempted (SIGTERM),
  Interrupted (Ctrl-C), OSError (the workdir cannot be written).
  """
  config = validation.prepare(config)  # per-model values applied (a no-op if none)
  workdir = workdir_lock.checked_workdir(workdir)
  faults = faults_lib.from_env()
  new = not os.path.exists(workdir)
  # SIGTERM or Ctrl-C from here on (set-up and compilation included) ends the
  # run after the step in progress, never in the middle of one.
  try:
    with _Preemption() as preemption:
      preemption.register(workdir_lib.checkpoint_dir(workdir))
      trainer = _Trainer(
        config, workdir, faults, preemption, allow_config_change, allow_data_change
      )
      if jax.process_index() != 0:  # in a multi-process job the first holds the lock
        return trainer.run(stop_after_step)
      with workdir_lock.WorkdirLock(workdir):
        return trainer.run(stop_after_step)
  except BaseException:
    if new and jax.process_index() == 0:  # a failed start leaves no new directory
      try:
        os.rmdir(workdir)  # only if nothing was written in it
      except OSError:
        pass
    raise


# --------------------------------------------------------------------------
# The run


class _Trainer:
  """One call of :func:`train_and_evaluate`: checks, then the step loop."""

  def __init__(
    self,
    config,
    workdir: str,
    faults,
    preemption,
    allow_config_change: bool,
    allow_data_change: bool = False,
  ):
    self.config, self.workdir = config, workdir
    self.faults, self.preemption = faults, preemption
    self.allow_config_change = allow_config_change
    self.allow_data_change = allow_data_change
    self.primary = jax.process_index() == 0  # one process writes the files
    self.ckpt = checkpoint_lib.Checkpointer(
      workdir_lib.checkpoint_dir(workdir),
      max_to_keep=config.checkpoint.max_to_keep,
      best=workdir_lib.best_of(config),
      async_save=config.checkpoint.async_save,
    )
    faults.attach(self.ckpt)
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
    task = data_lib.make_task(self.config, self.workdir)  # saved vocabularies
    changes = []
    if latest is not None:
      changes = workdir_lib.check_resume(
        self.config, self.workdir, self.ckpt, latest, task, self.allow_config_change
      )
    return latest, corrupt, task, changes

  def _run(self, stop_after_step):
    config, workdir, ckpt = self.config, self.workdir, self.ckpt
    latest, corrupt, task, changes = self._check()
    total = config.train.steps
    finished = latest is not None and latest >= total
    fingerprint = None
    if not finished:  # a finished run reads no data
      fingerprint = workdir_lib.data_fingerprint(config)
      if latest is not None:
        changes = changes + workdir_lib.check_data(
          workdir, latest, fingerprint, self.allow_data_change
        )
      self._build(task)  # loads the data: a bad file fails here, nothing written
    # ---- from here on the workdir may change
    if self.primary:
      ckpt.prepare_for_writing(corrupt)
    # The other processes read or restore only once the directory is clean.
    checkpoint_lib.sync_processes(f"attention_jax_prepared_{latest}")
    if changes:
      logging.warning("resuming with config changes: %s", workdir_lib.format_changes(changes))
      if self.primary:
        workdir_lib.record_changes(workdir, latest, changes)
    if finished:
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
    if self.primary:
      workdir_lib.write_config(workdir, config)
      workdir_lib.write_fingerprint(workdir, fingerprint)
      data_lib.save_task_files(self.fresh_run.task, workdir)
      environment.append(workdir)
    meta = self._start(latest)
    return self._loop(meta, latest, stop_after_step)

  def _build(self, task) -> None:
    """The mesh, the run, the jitted steps, the evaluation set and the
    training iterator (the data, read here); writes nothing."""
    config = self.config
    mesh = self.mesh = sharding_lib.make_mesh(config.train.num_devices)
    sharding_lib.check_batch_size(config.train.batch_size, mesh, "train.batch_size")
    # Evaluation pads its last batch anyway: round up to a multiple of devices.
    n_dev = mesh.devices.size
    self.eval_batch_size = -(-config.eval.batch_size // n_dev) * n_dev
    run = self.fresh_run = workdir_lib.make_run(config, self.workdir, task)
    donate = (0,) if jax.default_backend() != "cpu" else ()
    rep, batch = sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)

    def jit_train_step(objective):
      return jax.jit(
        step_lib.make_train_step(run.graphdef, run.tx, run.schedule, config, objective),
        in_shardings=(rep, batch),
        out_shardings=(rep, rep),
        donate_argnums=donate,
      )

    train_step = self.faults.wrap_train_step(jit_train_step, run.objective)
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
    self.train_iter = run.task.train_iterator()

  def _start(self, latest: int | None) -> dict[str, Any]:
    """Places (or restores) the state and the data position; opens the writer."""
    config, run = self.config, self.fresh_run
    self.state = sharding_lib.put_replicated(run.state, self.mesh)
    meta: dict[str, Any] = {}
    if latest is not None:
      self.state, meta = self.ckpt.restore(self.state, latest, verify=False)
      self.train_iter.set_state(meta["data"])
      logging.info("resumed from checkpoint at step %d in %s", latest, self.workdir)
    self.start = int(self.state.step)
    train_config = config.train
    if train_config.warmup_steps > train_config.steps:
      logging.warning(
        "train.warmup_steps (%d) > train.steps (%d): the warm-up is cut to %d steps",
        train_config.warmup_steps,
        train_config.steps,
        train_config.steps,
      )
    n_params = sum(x.size for x in jax.tree.leaves(self.state.params))
    logging.info(
      "model %s: %s parameters; training steps %d..%d on %s; "
      "data-parallel over %d device(s), %d process(es); compute dtype %s",
      config.model.name,
      f"{n_params:,}",
      self.start,
      train_config.steps,
      jax.devices()[0].platform,
      self.mesh.devices.size,
      jax.process_count(),
      train_config.compute_dtype,
    )
    # A run killed before its first checkpoint left rows: drop them too.
    metrics_path = os.path.join(self.workdir, "metrics.jsonl")
    resume_step = self.start if (latest is not None or os.path.exists(metrics_path)) else None
    self.writer = (
      writers.MetricWriter(self.workdir, resume_step=resume_step)
      if self.primary
      else writers.NullWriter()
    )
    self.progress = writers.Progress(train_config.steps, self.start)
    self.profiler = profiling.StepProfiler(
      profiling.parse_window(train_config.profile_steps), writers.tb_dir(self.workdir)
    )
    # Measurements since the last train row; saved with each checkpoint so a
    # resumed run writes the same rows as an uninterrupted one.
    self.pending: list[tuple[int, dict]] = [
      (s, {k: _decode(v) for k, v in m.items()}) for s, m in meta.get("pending", [])
    ]
    self.monitor = _NonFiniteMonitor(config, self.ckpt, self.start, meta.get("counters", {}))
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
        raise self.preemption.error(f"before step {step}; {done}")
      batch = next(self.train_iter)
      self.progress.add_tokens(self.fresh_run.task.count_tokens(batch))
      with self.profiler.step(step, lambda: self.state):
        self.state, measurements = self.train_step(self.state, batch)
      self.pending.append((step, measurements))
      last = step == total
      if step % c.train.log_every_steps == 0 or last:
        self._log(step)
      evaluated = step % c.eval.every_steps == 0 or last
      new_best = False
      if evaluated:
        last_eval = self._evaluate(step)
        new_best = self.ckpt.is_among_best(step, last_eval)
        if new_best:
          best = self.ckpt.best
          logging.info(
            "dev %s %.4f at step %d is among the best %d so far (its checkpoint is kept: "
            "--step best)",
            best.metric,
            last_eval[best.metric],
            step,
            best.keep,
          )
      stop = self.preemption.stop_after(step)  # every step, on every process
      if step % c.checkpoint.every_steps == 0 or last or stop or new_best:
        self._save(step, last_eval if evaluated else None)
      if stop:
        self.ckpt.wait_until_finished()
        raise self.preemption.error(
          f"after step {step}: checkpoint step {step} "
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
      self.eval_step,
      self.fresh_run.objective,
      self.state.params,
      self.eval_set,
      self.eval_batch_size,
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

  def _save(self, step: int, eval_row: dict | None) -> None:
    """Checkpoints ``step`` with the data position, host counters and, if it
    was just evaluated, its metrics (that rank it among the best); never a
    non-finite state."""
    self.pending = jax.device_get(self.pending)
    self.monitor.check(self.pending)
    if not bool(step_lib.all_finite(self.state)):
      raise NonFiniteError(
        f"the train state is not finite at step {step}; {self.monitor.last_good()}"
      )
    self.ckpt.wait_until_finished()  # the previous save
    self.ckpt.save(
      step,
      self.state,
      {
        "data": self.train_iter.get_state(),
        "pending": [[s, {k: _encode(v) for k, v in m.items()}] for s, m in self.pending],
        "counters": self.monitor.counters(),
      },
      metrics=None if eval_row is None else checkpoint_lib.eval_metrics(step, eval_row),
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
# Preemption, non-finite steps


class _Preemption:
  """Whether SIGTERM or Ctrl-C (SIGINT) asked the run to stop after a step,
  and after which.

  One process: while active, a Python handler sets ``requested`` instead of
  ending the process; the step in progress is finished and saved. A second
  Ctrl-C ends the process at once (exit 130) with one line: the newest
  committed checkpoint holds the run.

  Several processes: ``jax.distributed.initialize`` installed JAX's
  preemption notifier, which catches SIGTERM in any process (a Python handler
  here would replace it, so none is installed for SIGTERM; Ctrl-C is passed
  on to it as a SIGTERM to this process); :meth:`stop_after`, asked at every
  step, is True at one step agreed by all processes
  (``checkpoint.reached_preemption``), so all save that step. :meth:`register`
  tells the agreement the step a run starts from, before any work.
  """

  def __init__(self):
    self.multi = jax.process_count() > 1
    self.requested = False
    self.interrupted = False  # by Ctrl-C (else by SIGTERM)
    self.checkpoint_dir = None
    self._old: dict[int, Any] = {}

  def register(self, checkpoint_dir: str) -> None:
    """Several processes: reports the step this run resumes from (the newest
    committed checkpoint, 0 if none) so that a SIGTERM arriving during
    start-up picks a step ahead of it. Raises Preempted if that step is
    already the agreed one."""
    self.checkpoint_dir = checkpoint_dir
    if not self.multi:
      return
    latest = checkpoint_lib.Checkpointer(checkpoint_dir, create=False).latest_step()
    if checkpoint_lib.reached_preemption(latest or 0):
      raise self.error(f"before step {(latest or 0) + 1}; no step was done in this run")

  def stop_after(self, step: int) -> bool:
    """Whether to save ``step`` and stop. Call once per step, in order."""
    if self.multi:
      self.requested = checkpoint_lib.reached_preemption(step)
    return self.requested

  def error(self, what: str) -> Preempted:
    """The error that ends the run: ``Interrupted`` after Ctrl-C, else ``Preempted``."""
    if self.interrupted:
      return Interrupted(f"stopped by Ctrl-C (SIGINT) {what}")
    return Preempted(f"stopped by SIGTERM {what}")

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT:
      if self.interrupted:  # the second Ctrl-C: at once
        print(
          "error: stopped at once by a second Ctrl-C, without saving the step in "
          f"progress; the newest checkpoint in {self.checkpoint_dir} holds the run: "
          "run the same command again to resume from it",
          file=sys.stderr,
          flush=True,
        )
        os._exit(130)
      self.interrupted = True
      logging.warning(
        "Ctrl-C: finishing the current step, then saving a checkpoint and exiting "
        "(Ctrl-C again to stop at once without saving)"
      )
      if self.multi:  # JAX's notifier makes every process agree on the step
        os.kill(os.getpid(), signal.SIGTERM)
        return
    elif not self.requested:
      logging.warning(
        "received signal %d: finishing the current step, then saving a checkpoint and exiting",
        signum,
      )
    self.requested = True

  def __enter__(self):
    signums = [signal.SIGINT] if self.multi else [signal.SIGTERM, signal.SIGINT]
    for signum in signums:
      if signum == signal.SIGINT and signal.getsignal(signum) is signal.SIG_IGN:
        continue  # started ignoring Ctrl-C (nohup, a background job): keep it so
      try:
        self._old[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: cannot handle signals here
        pass
    return self

  def __exit__(self, *exc):
    for signum, old in self._old.items():
      signal.signal(signum, old)
    self._old = {}


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
