"""Training and evaluation: ``train_and_evaluate(config, workdir)``.

One jitted, pure train step ``(state, batch) -> (state, measurements)`` over
the model's parameters (an ``nnx.State``) and optax state; randomness is
``fold_in(rng, step)``. Running again on the same workdir resumes the run from
its latest checkpoint, including the data pipeline's position.

The run loop's guarantees (README, "Guarantees"): one process per workdir (a
lock); a resume verifies the checkpoint's hashes and refuses a config that
changes parameter shapes or, without ``allow_config_change``, hyperparameters,
before it touches the workdir; a non-finite loss or gradient stops the run
(or, with ``train.skip_nonfinite``, skips that update) and no non-finite state
is ever saved; SIGTERM finishes the step, saves it and raises
:class:`Preempted` — with several processes, SIGTERM to any one makes every
process save the same step and raise it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx

from attention_jax import checkpoint as checkpoint_lib
from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import faults as faults_lib
from attention_jax import models
from attention_jax import objectives
from attention_jax import sharding as sharding_lib
from attention_jax import workdir_lock
from attention_jax import writers
from attention_jax.data.vocab import PAD


class NonFiniteError(RuntimeError):
  """The loss or gradient norm became NaN or Inf."""


class Preempted(RuntimeError):
  """SIGTERM arrived: the step in progress was finished and saved."""


class ResumeRefused(config_lib.ConfigError):
  """The config cannot resume the workdir's run (shapes or hyperparameters)."""


@flax.struct.dataclass
class TrainState:
  step: jax.Array          # int32 []
  params: nnx.State        # the model's nnx.Param variables
  opt_state: Any           # optax state over params
  rng: jax.Array           # uint32 [2], the run's base key


# --------------------------------------------------------------------------
# Optimizer


def make_schedule(config) -> optax.Schedule:
  """The learning-rate schedule; a warm-up longer than the run (a short smoke
  run of a long config) is cut to ``train.steps``."""
  t = config.train
  peak, warmup = t.learning_rate, min(t.warmup_steps, t.steps)
  if t.schedule == "cosine":
    if not warmup:
      return optax.cosine_decay_schedule(peak, t.steps, alpha=t.end_lr_fraction)
    if warmup >= t.steps:     # nothing left to decay over
      return optax.linear_schedule(0.0, peak, warmup)
    return optax.warmup_cosine_decay_schedule(
        0.0, peak, warmup, t.steps, end_value=peak * t.end_lr_fraction)
  if t.schedule == "rsqrt":   # Vaswani et al. 2017, eq. 3 (scaled to peak)
    def rsqrt(step):
      step = jnp.maximum(step, 1).astype(jnp.float32)
      w = max(warmup, 1)
      return peak * jnp.minimum(step / w, jnp.sqrt(w / step))
    return rsqrt
  if warmup:
    return optax.linear_schedule(0.0, peak, warmup)
  return optax.constant_schedule(peak)


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  t = config.train
  schedule = make_schedule(config)
  if t.optimizer == "adam":
    opt = optax.adam(schedule)
  elif t.optimizer == "adamw":
    opt = optax.adamw(schedule, weight_decay=t.weight_decay)
  elif t.optimizer == "sgd":
    opt = optax.sgd(schedule, momentum=0.9)
  else:  # adadelta, as Bahdanau et al. 2014 (ρ = 0.95, ε = 1e-6)
    opt = optax.adadelta(schedule, rho=0.95, eps=1e-6)
  parts = []
  if t.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(t.grad_clip_norm))
  parts.append(opt)
  return optax.chain(*parts), schedule


# --------------------------------------------------------------------------
# State and steps


def create_state(config, src_vocab_size: int, tgt_vocab_size: int):
  """Builds the model and its train state. Returns (graphdef, state, tx, schedule)."""
  model = models.build_model(config, src_vocab_size, tgt_vocab_size)
  graphdef, params = nnx.split(model, nnx.Param)
  tx, schedule = make_optimizer(config)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=tx.init(params),
                     rng=jax.random.PRNGKey(config.seed))
  return graphdef, state, tx, schedule


def merge_for_compute(graphdef, params, config):
  """The model with parameters cast to ``train.compute_dtype``.

  Mixed precision: parameters and optimizer state stay float32; the forward
  and backward passes run in the compute dtype (the cast's gradient brings
  the float32 gradients back); losses are computed in float32.
  """
  dtype = jnp.dtype(config.train.compute_dtype) if config is not None else None
  if dtype is not None and dtype != jnp.float32:
    params = jax.tree.map(
        lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p,
        params)
  return nnx.merge(graphdef, params)


def make_train_step(graphdef, tx, schedule, config, objective, *,
                    inject_nonfinite: tuple[tuple[int, int], ...] | None = None):
  """The pure step function (not yet jitted).

  ``measurements["finite"]`` is whether loss, gradient, update and parameter
  norms are all finite. With ``config.train.skip_nonfinite`` a non-finite step
  keeps the previous parameters and optimizer state, as
  ``optax.apply_if_finite``: the step counter and the data advance, the
  optimizer's own count (hence the learning-rate schedule) does not.
  ``measurements["learning_rate"]`` is the rate this step applied.
  ``inject_nonfinite=((a, b), …)`` makes the loss NaN at steps a..b (fault
  tests only).
  """
  skip = bool(config.train.get("skip_nonfinite", False))

  def loss_fn(params, batch, rng, poison):
    model = merge_for_compute(graphdef, params, config)
    loss, extra = objective.train_loss(model, batch, rng, config)
    return loss * poison, extra

  def train_step(state: TrainState, batch) -> tuple[TrainState, dict]:
    rng = jax.random.fold_in(state.rng, state.step)
    poison = jnp.float32(1.0)
    for lo, hi in inject_nonfinite or ():
      n = state.step + 1
      poison = jnp.where((n >= lo) & (n <= hi), jnp.float32(jnp.nan), poison)
    (loss, extra), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, batch, rng, poison)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    update_norm = optax.global_norm(updates)
    param_norm = optax.global_norm(params)
    finite = (jnp.isfinite(loss) & jnp.isfinite(grad_norm)
              & jnp.isfinite(update_norm) & jnp.isfinite(param_norm))
    if skip:
      keep = lambda new, old: jax.tree.map(
          lambda n, o: jnp.where(finite, n, o), new, old)
      params = keep(params, state.params)
      opt_state = keep(opt_state, state.opt_state)
    measurements = {
        "loss": loss,
        **extra,
        "grad_norm": grad_norm,
        "param_norm": param_norm,
        "update_norm": update_norm,
        "learning_rate": schedule(_schedule_count(state)),
        "finite": finite,
    }
    new_state = state.replace(step=state.step + 1, params=params,
                              opt_state=opt_state)
    return new_state, measurements

  return train_step


def _schedule_count(state: TrainState) -> jax.Array:
  """The optimizer's schedule step (``state.step`` unless steps were skipped)."""
  is_sched = lambda x: isinstance(x, optax.ScaleByScheduleState)
  counts = [x.count for x in jax.tree.leaves(state.opt_state, is_leaf=is_sched)
            if is_sched(x)]
  return counts[0] if counts else state.step


@jax.jit
def all_finite(tree) -> jax.Array:
  """True iff every floating-point leaf of ``tree`` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_eval_step(graphdef, objective, config=None):
  """``(params, batch) -> objective.eval_batch(model, batch)``."""

  def eval_step(params, batch):
    return objective.eval_batch(merge_for_compute(graphdef, params, config), batch)

  return eval_step


def evaluate(eval_step, objective, params, eval_set: dict[str, np.ndarray],
             batch_size: int) -> dict[str, float]:
  """Runs ``eval_step`` over the whole set in fixed-shape batches."""
  N = len(next(iter(eval_set.values())))
  sums: dict[str, float] = {}
  each: dict[str, list] = {}
  for start in range(0, N, batch_size):
    chunk = {k: v[start:start + batch_size] for k, v in eval_set.items()}
    real = len(next(iter(chunk.values())))
    if real < batch_size:   # pad with all-PAD rows: they count nothing
      chunk = {k: np.concatenate([v, np.full((batch_size - real, *v.shape[1:]),
                                             PAD, v.dtype)]) for k, v in chunk.items()}
    out = jax.device_get(eval_step(params, chunk))
    for k, v in out.items():
      if k.startswith("sum_"):
        sums[k] = sums.get(k, 0.0) + float(v)
      elif k.startswith("each_"):
        each.setdefault(k, []).append(np.asarray(v)[:real])
  return objective.finalize(sums, {k: np.concatenate(v) for k, v in each.items()})


# --------------------------------------------------------------------------
# The run


@dataclasses.dataclass
class Run:
  """Everything a run needs, rebuilt the same way for training and loading."""
  config: Any
  task: Any
  objective: Any
  graphdef: Any
  state: TrainState
  tx: Any
  schedule: Any


def build_run(config, workdir: str | None = None, task=None) -> Run:
  """``workdir``: where the task finds its saved vocabularies/tokenizers;
  ``task``: one already built (else built here)."""
  task = data_lib.build_task(config, workdir) if task is None else task
  graphdef, state, tx, schedule = create_state(
      config, len(task.src_vocab), len(task.tgt_vocab))
  return Run(config, task, objectives.get(task.objective, task, config), graphdef,
             state, tx, schedule)


def abstract_state(config, task) -> TrainState:
  """The train state's shapes and dtypes (``jax.ShapeDtypeStruct``), computed
  without allocating or initializing any parameter."""
  return jax.eval_shape(
      lambda: create_state(config, len(task.src_vocab), len(task.tgt_vocab))[1])


def load_model(workdir: str, step: int | str | None = None):
  """Rebuilds a trained model from ``workdir/config.json`` and its checkpoint
  (``step``: a number, ``"best"`` for the best dev BLEU, None for the latest).

  Executes no config file. Returns ``(model, config, run)``.
  """
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} a workdir?")
  with open(path, encoding="utf-8") as f:
    config = config_lib.from_json(f.read())
  run = build_run(config, workdir)
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     create=False)
  try:
    if step == "best":
      step = ckpt.best_step()
      if step is None:
        raise FileNotFoundError(
            f"no best checkpoint in {ckpt.directory}: no evaluation of this run "
            "reported bleu")
    state, _ = ckpt.restore(run.state, step, on_corrupt=config.checkpoint.get(
        "on_corrupt", "stop"))
  finally:  # also on a failed restore: an open manager spews at exit
    ckpt.close()
  run.state = state
  return nnx.merge(run.graphdef, state.params), config, run


def _write_config(workdir: str, config) -> None:
  path = os.path.join(workdir, "config.json")
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(config_lib.to_json(config))
  os.replace(tmp, path)


def _read_run_config(workdir: str) -> dict:
  """The workdir's ``config.json`` as a dict; ResumeRefused if unreadable."""
  path = os.path.join(workdir, "config.json")
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ResumeRefused(
        f"cannot resume {workdir}: its config {path} is unreadable "
        f"({type(e).__name__}: {' '.join(str(e).split())}), so the new config "
        "cannot be checked against it; pass --allow_config_change to resume "
        "anyway, or use a new --workdir") from None


def _format_changes(changes) -> str:
  return ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)


def check_resume(config, workdir: str, ckpt, step: int, task,
                 allow_config_change: bool = False) -> list:
  """Refuses a config that cannot continue checkpoint ``step`` of ``workdir``.

  Raises :class:`ResumeRefused` (one line) when the parameter or optimizer
  shapes differ from the checkpoint's (naming the leaves and the config keys
  that changed), or when keys that steer training changed and
  ``allow_config_change`` is false (listing them; see
  ``config.is_resume_free``). Reads only. Returns the changed keys as
  ``(key, old, new)``.
  """
  try:
    old = _read_run_config(workdir)
  except ResumeRefused:
    if not allow_config_change:
      raise
    old = None
  changes = [] if old is None else config_lib.config_changes(old, config)
  diffs = checkpoint_lib.compare_shapes(ckpt.record(step)["tree"],
                                        abstract_state(config, task))
  if diffs:
    n_params = sum(d.startswith("params/") for d in diffs)
    more = (f"; and {len(diffs) - 4} more" if len(diffs) > 4 else "")
    raise ResumeRefused(
        f"cannot resume {workdir} from step {step}: the config changes the "
        f"shapes of {n_params} parameters ({len(diffs)} saved arrays with the "
        "optimizer state): " + "; ".join(diffs[:4]) + more
        + ". Config keys changed: " + (_format_changes(changes) or "none")
        + ". Use a new --workdir, or restore the old values")
  steering = [c for c in changes if not config_lib.is_resume_free(c[0], old, config)]
  if steering and not allow_config_change:
    raise ResumeRefused(
        f"cannot resume {workdir} from step {step}: the config differs from "
        f"the run's config.json in {_format_changes(steering)}; pass "
        "--allow_config_change to continue with the new values, or use a new "
        "--workdir")
  return changes


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
      raise Preempted(f"stopped by SIGTERM before step {(latest or 0) + 1}; "
                      "no step was done in this run")

  def stop_after(self, step: int) -> bool:
    """Whether to save ``step`` and stop. Call once per step, in order."""
    if self.multi:
      self.requested = checkpoint_lib.reached_preemption(step)
    return self.requested

  def _handle(self, signum, frame):
    del frame
    if not self.requested:
      logging.warning("received signal %d: finishing the current step, then "
                      "saving a checkpoint and exiting", signum)
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
    return {"skipped_steps": self.skipped,
            "consecutive_nonfinite": self.in_a_row}

  def last_good(self) -> str:
    try:
      self.ckpt.wait_until_finished()
    except checkpoint_lib.CheckpointError as e:
      logging.error("%s", e)
    last = self.ckpt.latest_step()
    return ("last good checkpoint: "
            f"{'none' if last is None else f'step {last}'} in {self.ckpt.directory}")

  def check(self, pending) -> None:
    for step, m in pending:
      if step <= self.checked_through:
        continue
      self.checked_through = step
      if bool(m["finite"]):
        self.in_a_row = 0
        continue
      bad = [k for k in ("loss", "grad_norm", "update_norm", "param_norm")
             if not np.isfinite(float(m[k]))]
      what = ", ".join(f"{k} became {float(m[k])}" for k in bad)
      if not self.skip:
        raise NonFiniteError(f"{what} at step {step}; {self.last_good()}")
      self.skipped += 1
      self.in_a_row += 1
      logging.warning("step %d skipped (%s): %d in a row, %d in all", step, what,
                      self.in_a_row, self.skipped)
      if self.in_a_row >= self.limit:
        raise NonFiniteError(
            f"{what} at step {step}: {self.in_a_row} non-finite steps in a row "
            f"(train.max_consecutive_nonfinite={self.limit}); "
            f"{self.last_good()}")


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
    if (isinstance(value, str) or value is None or not np.isfinite(value)
        or (self.record is not None and value <= self.record[self.metric])):
      return False
    self.record = {"step": int(step), self.metric: float(value)}
    return True


def train_and_evaluate(config, workdir: str, *,
                       stop_after_step: int | None = None,
                       allow_config_change: bool = False) -> dict[str, float]:
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
  config = config_lib.resolve(config)   # per-model values (a no-op if none)
  config_lib.validate(config)
  workdir = os.path.abspath(workdir)
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise config_lib.ConfigError(f"--workdir {workdir} exists and is not a directory")
  faults = faults_lib.from_env()
  # SIGTERM from here on (set-up and compilation included) ends the run with
  # Preempted after the step in progress, never in the middle of one.
  with _Preemption() as preemption:
    preemption.register(os.path.join(workdir, "checkpoints"))
    if jax.process_index() != 0:   # in a multi-process job the first holds the lock
      return _train_locked(config, workdir, faults, stop_after_step,
                           allow_config_change, preemption)
    with workdir_lock.WorkdirLock(workdir):
      return _train_locked(config, workdir, faults, stop_after_step,
                           allow_config_change, preemption)


def _train_locked(config, workdir, faults, stop_after_step, allow_config_change,
                  preemption):
  total = config.train.steps
  ckpt = checkpoint_lib.Checkpointer(
      os.path.join(workdir, "checkpoints"), max_to_keep=config.checkpoint.max_to_keep,
      async_save=config.checkpoint.async_save)
  ckpt.before_commit = faults.before_commit
  primary = jax.process_index() == 0   # one process writes the workdir's files
  writer = None
  ok = False
  try:
    # ---- checks: nothing in the workdir changes until they pass
    latest, corrupt = ckpt.select(config.checkpoint.on_corrupt)
    task = data_lib.build_task(config, workdir)   # reads saved vocabularies
    changes = []
    if latest is not None:
      changes = check_resume(config, workdir, ckpt, latest, task,
                             allow_config_change)
    # ---- from here on the workdir may change
    if primary:
      ckpt.prepare_for_writing(corrupt)
    # The other processes read or restore only once the directory is clean.
    checkpoint_lib.sync_processes(f"attention_jax_prepared_{latest}")
    if changes:
      logging.warning("resuming with config changes: %s", _format_changes(changes))
    if changes and primary:
      with open(os.path.join(workdir, "config_changes.jsonl"), "a",
                encoding="utf-8") as f:
        f.write(json.dumps({"step": latest, "changes": {
            k: [a, b] for k, a, b in changes}}) + "\n")
    if latest is not None and latest >= total:
      logging.info("resumed from checkpoint at step %d in %s: training already "
                   "finished (train.steps=%d); nothing to do", latest, workdir, total)
      if changes and primary:
        _write_config(workdir, config)
      evals = [m for m in writers.read_metrics(workdir) if m["split"] == "eval"]
      ok = True
      return evals[-1] if evals else {}

    mesh = sharding_lib.make_mesh(config.train.num_devices)
    sharding_lib.check_batch_size(config.train.batch_size, mesh, "train.batch_size")
    # Evaluation pads its last batch anyway: round up to a multiple of devices.
    n_dev = mesh.devices.size
    eval_batch_size = -(-config.eval.batch_size // n_dev) * n_dev
    run = build_run(config, workdir, task)
    if primary:
      _write_config(workdir, config)
      data_lib.save_task_files(run.task, workdir)

    state = sharding_lib.put_replicated(run.state, mesh)
    train_iter = run.task.train_iterator()
    meta: dict[str, Any] = {}
    if latest is not None:
      state, meta = ckpt.restore(state, latest, verify=False)  # verified above
      train_iter.set_state(meta["data"])
      logging.info("resumed from checkpoint at step %d in %s", latest, workdir)
    start = int(state.step)
    if config.train.warmup_steps > config.train.steps:
      logging.warning("train.warmup_steps (%d) > train.steps (%d): the warm-up is "
                      "cut to %d steps", config.train.warmup_steps,
                      config.train.steps, config.train.steps)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info("model %s: %s parameters; training steps %d..%d on %s; "
                 "data-parallel over %d device(s), %d process(es); compute dtype %s",
                 config.model.name, f"{n_params:,}", start, total,
                 jax.devices()[0].platform, mesh.devices.size, jax.process_count(),
                 config.train.compute_dtype)

    donate = (0,) if jax.default_backend() != "cpu" else ()
    rep, data = sharding_lib.replicated(mesh), sharding_lib.batch_sharding(mesh)
    jit_train_step = jax.jit(
        make_train_step(run.graphdef, run.tx, run.schedule, config, run.objective,
                        inject_nonfinite=faults.nonfinite_steps),
        in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=donate)
    # Outputs replicated: every process reads every example's outputs (with
    # several processes a batch-sharded output is not addressable on one).
    jit_eval_step = jax.jit(make_eval_step(run.graphdef, run.objective, config),
                            in_shardings=(rep, data), out_shardings=rep)
    train_step = lambda s, b: jit_train_step(s, sharding_lib.put_batch(b, mesh))
    eval_step = lambda p, b: jit_eval_step(p, sharding_lib.put_batch(b, mesh))
    eval_set = run.task.eval_set("eval")

    # A run killed before its first checkpoint left rows: drop them too.
    metrics_path = os.path.join(workdir, "metrics.jsonl")
    resume_step = start if (latest is not None or os.path.exists(metrics_path)) else None
    writer = (writers.MetricWriter(workdir, resume_step=resume_step) if primary
              else writers.NullWriter())
    progress = writers.Progress(total, start)
    # Measurements since the last train row; saved with each checkpoint so a
    # resumed run writes the same rows as an uninterrupted one.
    pending: list[tuple[int, dict]] = [
        (s, {k: _decode(v) for k, v in m.items()}) for s, m in meta.get("pending", [])]
    monitor = _NonFiniteMonitor(config, ckpt, start, meta.get("counters", {}))
    best = _BestEval(meta.get("best"))
    ckpt.keep = best.steps()
    last_eval: dict[str, float] = {}
    c = config

    def save(step: int) -> None:
      nonlocal pending
      pending = jax.device_get(pending)
      monitor.check(pending)
      if not bool(all_finite(state)):   # never save a non-finite state
        raise NonFiniteError(f"the train state is not finite at step {step}; "
                             f"{monitor.last_good()}")
      ckpt.wait_until_finished()   # the previous save, before any fault
      faults.before_save(step)
      ckpt.keep = best.steps()
      ckpt.save(step, state, {
          "data": train_iter.get_state(),
          "pending": [[s, {k: _encode(v) for k, v in m.items()}] for s, m in pending],
          "counters": monitor.counters(), "best": best.record})

    for step in range(start + 1, total + 1):
      if preemption.requested:   # before the first step: nothing new to save
        done = (f"checkpoint step {start} in {ckpt.directory} holds every step"
                if latest is not None else "no step was done")
        raise Preempted(f"stopped by SIGTERM before step {step}; {done}")
      batch = next(train_iter)
      progress.add_tokens(run.task.count_tokens(batch))
      state, measurements = train_step(state, batch)
      pending.append((step, measurements))
      faults.after_step(step)
      last = step == total
      if step % c.train.log_every_steps == 0 or last:
        pending = jax.device_get(pending)
        monitor.check(pending)
        rates = progress.report(step)
        finite = [m for _, m in pending if bool(m["finite"])] or [
            m for _, m in pending]
        row = {k: _mean([m[k] for m in finite]) for k in pending[-1][1]
               if k != "finite"}
        row["learning_rate"] = float(pending[-1][1]["learning_rate"])
        if c.train.skip_nonfinite:
          row["skipped_steps"] = monitor.skipped
        row.update(rates)
        writer.write(step, "train", row)
        logging.info(progress.line(step, row["loss"], rates))
        pending = []
      new_best = False
      if step % c.eval.every_steps == 0 or last:
        t0 = time.perf_counter()
        last_eval = evaluate(eval_step, run.objective, state.params, eval_set,
                             eval_batch_size)
        writer.write(step, "eval", last_eval)
        logging.info("eval at step %d: %s (%.1fs)", step, "  ".join(
            f"{k} {v:.4f}" for k, v in last_eval.items() if not isinstance(v, str)),
            time.perf_counter() - t0)
        new_best = best.update(step, last_eval)
        if new_best:
          logging.info("best dev %s so far: %.4f at step %d (its checkpoint is "
                       "kept: --step best)", best.metric, best.record[best.metric],
                       step)
        progress.report(step)  # do not count evaluation time as training time
      stop = preemption.stop_after(step)   # every step, on every process
      if step % c.checkpoint.every_steps == 0 or last or stop or new_best:
        save(step)
      if stop:
        ckpt.wait_until_finished()
        raise Preempted(
            f"stopped by SIGTERM after step {step}: checkpoint step {step} "
            f"saved in {ckpt.directory}; run the same command again to resume")
      if step == stop_after_step:
        logging.info("stopping after step %d as asked", step)
        break
    if stop_after_step is None or stop_after_step >= total:
      ckpt.wait_until_finished()
      logging.info("finished: step %d, checkpoints in %s", total, ckpt.directory)
    ok = True
    return last_eval
  finally:
    if ok:   # errors while closing (a save that failed late) propagate
      for thing in (writer, ckpt):
        if thing is not None:
          thing.close()
    else:
      _close_quietly(writer, ckpt)


def _close_quietly(writer, ckpt) -> None:
  """Closes after an error without masking it (a full disk fails here too)."""
  for thing in (writer, ckpt):
    if thing is None:
      continue
    try:
      thing.close()
    except Exception as e:  # noqa: BLE001
      logging.warning("while closing after an error: %s: %s", type(e).__name__, e)
