"""Checkpoints through orbax — the only module that talks to orbax.

A step ``checkpoints/N/`` holds orbax's items ``state`` (one pytree), ``meta``
(JSON: data position, host counters) and ``metrics`` (the step's evaluation),
and our ``integrity.json`` (size and SHA-256 of every file, shape and dtype of
every leaf), written before orbax commits the step. What this adds to orbax
(which detects no flipped bytes and names no parameter on a shape mismatch):
commit records, re-hashing with fallback to the newest good step, shape
differences by name, one-line write errors. Which steps are kept is orbax's
preservation policies. The guarantees: docs/reliability.md.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from attention_jax import fileio
from attention_jax.errors import (
  CheckpointError,
  CheckpointWriteError,
  CorruptCheckpointError,
  one_line,
)

INTEGRITY_NAME = "integrity.json"
TMP_SUFFIX = ".orbax-checkpoint-tmp"
ITEMS = ("state", "meta")
METRICS_ITEM = "metrics"  # orbax's own item of a step saved with metrics
QUARANTINE_NAME = "checkpoints_quarantine"  # beside the checkpoint directory
ON_CORRUPT = ("fallback", "stop")


# --------------------------------------------------------------------------
# Records: leaf names, shapes, hashes


def _key_name(k) -> str:
  for attr in ("name", "key", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def leaf_name(path) -> str:
  """``(GetAttrKey('params'), DictKey('encoder'), …)`` -> ``params/encoder/…``
  (without the trailing ``/value`` of an NNX variable)."""
  name = "/".join(_key_name(k) for k in path)
  return name[: -len("/value")] if name.endswith("/value") else name


def tree_manifest(tree: Any) -> dict[str, list]:
  """``{leaf name: [shape, dtype]}`` of every array leaf of ``tree``."""
  out = {}
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    out[leaf_name(path)] = [list(np.shape(x)), str(np.dtype(x.dtype))]
  return out


def compare_shapes(recorded: dict[str, list], target: Any) -> list[str]:
  """Human-readable differences between a step's record and ``target``.

  Empty when every leaf has the same name, shape and dtype.
  """
  now = tree_manifest(target)
  diffs = []

  def order(n):  # parameters first: optimizer state mirrors them
    return (not n.startswith("params/"), n)

  for name in sorted(set(recorded) | set(now), key=order):
    if name not in now:
      diffs.append(f"{name} {tuple(recorded[name][0])} in checkpoint, absent now")
    elif name not in recorded:
      diffs.append(f"{name} {tuple(now[name][0])} now, absent in checkpoint")
    elif list(recorded[name]) != list(now[name]):
      (s0, d0), (s1, d1) = recorded[name], now[name]
      what = (
        f"{tuple(s0)} in checkpoint, {tuple(s1)} now"
        if s0 != s1
        else f"dtype {d0} in checkpoint, {d1} now"
      )
      diffs.append(f"{name} {what}")
  return diffs


def _data_files(step_dir: str) -> list[str]:
  """Relative paths of every file of the items (orbax's own bookkeeping files
  at the top of the step directory change during its commit: not hashed)."""
  out = []
  for item in (*ITEMS, METRICS_ITEM):
    root = os.path.join(step_dir, item)
    for dirpath, _, names in os.walk(root):
      for n in names:
        out.append(os.path.relpath(os.path.join(dirpath, n), step_dir))
  return sorted(out)


def _hash_files(step_dir: str) -> dict[str, dict]:
  return {
    rel: {
      "bytes": os.path.getsize(os.path.join(step_dir, rel)),
      "sha256": fileio.sha256_file(os.path.join(step_dir, rel)),
    }
    for rel in _data_files(step_dir)
  }


def _abstract(x):
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  sharding = getattr(x, "sharding", None)
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


# --------------------------------------------------------------------------
# The best steps


@dataclasses.dataclass(frozen=True)
class Best:
  """The evaluation metric that ranks steps, which way is better (``"max"``
  or ``"min"``), and how many of the best steps are kept."""

  metric: str
  mode: str = "max"
  keep: int = 1

  def rank(self, metrics: dict | None) -> tuple[float, int] | None:
    """Higher is better: (the metric, signed so that higher is better; minus
    the step, so that of equal values the earlier step wins). None without a
    finite value."""
    value = (metrics or {}).get(self.metric)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
      return None
    return (value if self.mode == "max" else -value, -int(metrics["step"]))

  def orbax_key(self, metrics) -> tuple[float, int]:
    """:meth:`rank` for orbax's ``BestN``, which keeps the highest; a step
    without the metric ranks last."""
    return self.rank(metrics) or (-math.inf, -math.inf)


def eval_metrics(step: int, row: dict) -> dict:
  """What a step saved after an evaluation carries: the row's finite numbers
  and the step."""
  out = {
    k: float(v)
    for k, v in row.items()
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
  }
  out["step"] = int(step)
  return out


# --------------------------------------------------------------------------
# Several processes


def reached_preemption(step: int) -> bool:
  """Whether ``step`` is the step every process agreed to stop at after a
  SIGTERM reached any of them (orbax's ``reached_preemption``).

  ``jax.distributed.initialize`` installs JAX's preemption notifier, which
  catches SIGTERM in a process and tells the coordination service; the
  processes then agree on one step, the largest step any of them has passed
  here plus one, and this returns True at that step on every process. Call it
  with every step, in order, on every process; it is a local check (no
  collective). A single process (no ``jax.distributed``) always gets False.
  """
  return ocp.multihost.reached_preemption(step)


def sync_processes(name: str) -> None:
  """A barrier across all processes (a no-op in a single process); ``name``
  must be unique per use."""
  ocp.multihost.sync_global_processes(name)


# --------------------------------------------------------------------------
# The checkpointer


class Checkpointer:
  """Saves, verifies and restores training state under ``directory``.

  Saves are asynchronous unless ``async_save=False``. Several processes (one
  workdir on a shared filesystem) call ``save``/``restore`` at the same steps:
  orbax writes cooperatively, process 0 writes the record once every
  process's files are in, and every process keeps the same list of steps.

  Hooks for fault tests (:func:`attention_jax.faults.Faults.attach`):
  ``before_save(step)``, if set, runs in :meth:`save` once the previous save
  has finished; ``before_commit(step)`` runs in the save thread after the
  step's files are written and before they are committed.
  """

  def __init__(
    self,
    directory: str,
    *,
    max_to_keep: int = 3,
    best: Best | None = None,
    async_save: bool = True,
    create: bool = True,
  ):
    self.directory = os.path.abspath(directory)
    self.max_to_keep = max_to_keep
    self.best = best
    self.async_save = async_save
    self.create = create
    self.before_save: Callable[[int], None] | None = None
    self.before_commit: Callable[[int], None] | None = None
    self._pending: tuple[int, dict] | None = None  # (step, tree manifest)
    self._manager: ocp.CheckpointManager | None = None
    self._failed = False
    self._legacy: dict | None | bool = False  # not read yet
    # Every step's metrics, read once or given to save: ranking needs no wait
    # for a save in flight and reads the same in every process.
    self._metrics: dict[int, dict | None] = {}
    self._committed_at_open: set[int] = set()
    self._saved_here: set[int] = set()

  # ---- orbax, created on first write or read (after any clean-up)

  @property
  def _mgr(self) -> ocp.CheckpointManager:
    if self._manager is None:
      options = ocp.CheckpointManagerOptions(
        create=self.create,
        enable_async_checkpointing=True,
        async_options=ocp.AsyncOptions(post_finalization_callback=self._commit),
        preservation_policy=self._preservation_policy(),
        # orbax writes a step's metrics only while it ranks steps.
        best_fn=self.best.orbax_key if self.best else None,
      )
      self._committed_at_open = set(self.committed_steps())
      self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
    return self._manager

  def _preservation_policy(self):
    """The newest ``max_to_keep`` steps (``LatestN``), the ``best.keep`` best
    by :meth:`Best.orbax_key` (``BestN``), and the best step of a workdir
    written before steps carried metrics (``CustomSteps``). orbax deletes
    steps only after a newer save has committed."""
    policies = ocp.checkpoint_managers
    keep = [policies.LatestN(n=self.max_to_keep)]
    if self.best is not None:
      keep.append(
        policies.BestN(
          get_metric_fn=self.best.orbax_key,
          n=self.best.keep,
          keep_checkpoints_without_metrics=False,
        )
      )
    legacy = self.legacy_best()
    if legacy is not None:
      keep.append(policies.CustomSteps(steps=[int(legacy["step"])]))
    return policies.AnyPreservationPolicy(keep)

  def legacy_best(self) -> dict | None:
    """The best record of a workdir written before steps carried metrics:
    the ``best`` of the newest step's ``meta`` that has one (``{"step": N,
    "bleu": value}``), if step N is still here; else None."""
    if self._legacy is False:
      self._legacy = None
      steps = self.committed_steps()
      if steps:
        reader = ocp.CheckpointManager(
          self.directory,
          options=ocp.CheckpointManagerOptions(create=False),
          item_names=ITEMS,
        )
        try:
          for step in reversed([s for s in steps if reader.metrics(s) is None]):
            try:
              meta = reader.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            except Exception:  # noqa: BLE001 - an unreadable step names no best
              continue
            best = dict(meta["meta"]).get("best")
            if best:
              if int(best["step"]) in steps:
                self._legacy = dict(best)
              break
        finally:
          reader.close()
    return self._legacy

  # ---- what is on disk

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _listing(self) -> list[str]:
    try:
      return sorted(os.listdir(self.directory))
    except FileNotFoundError:
      return []

  def committed_steps(self) -> list[int]:
    """Steps with a commit record, oldest first (not verified: see verify)."""
    return sorted(
      int(n)
      for n in self._listing()
      if n.isdigit() and os.path.isfile(os.path.join(self.directory, n, INTEGRITY_NAME))
    )

  all_steps = committed_steps

  def latest_step(self) -> int | None:
    steps = self.committed_steps()
    return steps[-1] if steps else None

  def uncommitted(self) -> list[str]:
    """Names of half-written saves: temporary directories, steps without record."""
    out = []
    for n in self._listing():
      path = os.path.join(self.directory, n)
      if TMP_SUFFIX in n or (
        n.isdigit()
        and os.path.isdir(path)
        and not os.path.isfile(os.path.join(path, INTEGRITY_NAME))
      ):
        out.append(n)
    return out

  def record(self, step: int) -> dict:
    """The step's ``integrity.json`` (``files``, ``tree``)."""
    path = os.path.join(self._step_dir(step), INTEGRITY_NAME)
    try:
      with open(path, encoding="utf-8") as f:
        rec = json.load(f)
      _ = rec["files"], rec["tree"]  # both must be present (KeyError otherwise)
      return rec
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise CorruptCheckpointError(
        step,
        f"checkpoint step {step} is corrupt: its record {path} is "
        f"unreadable ({one_line(e, 400, with_type=True)})",
      ) from None

  def verify(self, step: int) -> None:
    """Re-hashes every file of ``step``; raises CorruptCheckpointError."""
    rec = self.record(step)
    step_dir = self._step_dir(step)
    for rel, want in sorted(rec["files"].items()):
      path = os.path.join(step_dir, rel)
      problem = None
      if not os.path.isfile(path):
        problem = "is missing"
      elif os.path.getsize(path) != want["bytes"]:
        problem = (
          f"has {os.path.getsize(path)} bytes, {want['bytes']} when "
          "saved (truncated or overwritten)"
        )
      elif fileio.sha256_file(path) != want["sha256"]:
        problem = "has changed bytes (SHA-256 differs from the one recorded)"
      if problem:
        raise CorruptCheckpointError(step, f"checkpoint step {step} is corrupt: {path} {problem}")

  def select(self, on_corrupt: str = "stop") -> tuple[int | None, list[CorruptCheckpointError]]:
    """The newest step that verifies, and the corrupt ones newer than it.

    ``on_corrupt="stop"`` raises at the first corrupt step; ``"fallback"``
    goes on to older steps (and returns ``None`` if none is good).
    """
    if on_corrupt not in ON_CORRUPT:
      raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
    corrupt = []
    for step in reversed(self.committed_steps()):
      try:
        self.verify(step)
        return step, corrupt
      except CorruptCheckpointError as e:
        if on_corrupt == "stop":
          raise CorruptCheckpointError(
            e.step,
            f"{e}; set checkpoint.on_corrupt=fallback to resume from the newest good step instead",
          ) from None
        logging.warning("%s; falling back to an older step", e)
        corrupt.append(e)
    return None, corrupt

  def prepare_for_writing(self, corrupt: list[CorruptCheckpointError] = ()) -> list[str]:
    """Clears the way for saving again; returns what it did, one line each.

    Removes temporary directories of killed saves; moves steps without a
    record, corrupt steps, and steps newer than a fallback into
    ``checkpoints_quarantine/`` beside the checkpoint directory (kept, not
    deleted, for inspection).
    """
    if self._manager is not None:
      raise RuntimeError("prepare_for_writing must run before any save or restore")
    done = []
    quarantine = os.path.join(os.path.dirname(self.directory), QUARANTINE_NAME)
    bad = {str(e.step) for e in corrupt}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in self.uncommitted() + sorted(bad):
      path = os.path.join(self.directory, name)
      if not os.path.exists(path):
        continue
      if TMP_SUFFIX in name:
        shutil.rmtree(path)
        done.append(f"removed half-written save {path}")
      else:
        os.makedirs(quarantine, exist_ok=True)
        dest = os.path.join(quarantine, f"{name}-{stamp}")
        os.replace(path, dest)
        why = "corrupt" if name in bad else "never committed"
        done.append(f"moved {why} step {name} to {dest}")
    for line in done:
      logging.warning("%s", line)
    return done

  # ---- writing

  def _commit(self) -> None:
    """orbax's post-finalization callback: runs in its save thread after the
    items are written, before the temporary directory ``N.orbax-checkpoint-tmp``
    becomes ``N``, so a step exists with its record or not at all. A save
    killed halfway leaves a temporary directory (or, with an orbax that renames
    first, a step without record): not saved, and cleared by
    :meth:`prepare_for_writing`."""
    step, tree = self._pending
    if jax.process_index() != 0:  # one process writes the record
      return
    tmp = glob.glob(glob.escape(self._step_dir(step)) + TMP_SUFFIX + "*")
    step_dir = tmp[0] if tmp else self._step_dir(step)
    if self.before_commit is not None:
      self.before_commit(step)
    fileio.atomic_write_json(
      os.path.join(step_dir, INTEGRITY_NAME),
      {"format": 1, "step": step, "files": _hash_files(step_dir), "tree": tree},
      indent=1,
      sort_keys=True,
    )

  def _raise_write_error(self, e: BaseException) -> None:
    step = self._pending[0] if self._pending else "?"
    self._failed = True
    raise CheckpointWriteError(
      f"cannot write checkpoint step {step} to {self._step_dir(step)}: "
      f"{one_line(e, 400, with_type=True)}; older steps in {self.directory} are intact"
    ) from e

  def save(self, step: int, state: Any, meta: dict[str, Any], metrics: dict | None = None) -> None:
    """Starts saving ``step`` (waits for it unless ``async_save``).

    ``metrics`` (:func:`eval_metrics`), for a step just evaluated, rank it
    among the best; every step carries at least its number."""
    try:
      self._mgr.wait_until_finished()  # errors of the previous save surface here
    except Exception as e:  # noqa: BLE001 - orbax and tensorstore raise many types
      self._raise_write_error(e)
    if self.before_save is not None:
      self.before_save(step)
    self._pending = (step, tree_manifest(state))
    metrics = (metrics or {"step": int(step)}) if self.best is not None else None
    self._metrics[step] = metrics
    self._saved_here.add(step)
    try:
      self._mgr.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        metrics=metrics,
        force=True,
      )
      if not self.async_save:
        self._mgr.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - a failed write becomes one CheckpointError
      self._raise_write_error(e)

  def wait_until_finished(self) -> None:
    if self._manager is None:
      return
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - a failed write becomes one CheckpointError
      self._raise_write_error(e)

  # ---- reading

  def restore(
    self, target: Any, step: int | None = None, *, verify: bool = True, on_corrupt: str = "stop"
  ) -> tuple[Any, dict[str, Any]]:
    """Restores ``step`` (default: the newest good one) into ``target``'s structure.

    ``target`` is a pytree of arrays or ``jax.ShapeDtypeStruct`` (with
    shardings). The step is verified first unless ``verify=False``; a shape
    difference raises CheckpointError naming the leaves.
    """
    if step is None:
      step, _ = self.select(on_corrupt) if verify else (self.latest_step(), [])
      if step is None:
        raise FileNotFoundError(f"no checkpoint in {self.directory}")
    elif verify:
      self.verify(step)
    diffs = compare_shapes(self.record(step)["tree"], target)
    if diffs:
      raise CheckpointError(
        f"checkpoint step {step} in {self.directory} does not fit the model: "
        + "; ".join(diffs[:6])
        + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
      )
    abstract = jax.tree.map(_abstract, target)
    try:
      out = self._mgr.restore(
        step,
        args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        ),
      )
    except Exception as e:  # noqa: BLE001 - any restore failure becomes one CheckpointError
      raise CheckpointError(
        f"cannot restore checkpoint step {step} from "
        f"{self._step_dir(step)}: {one_line(e, 400, with_type=True)}"
      ) from e
    return out["state"], dict(out["meta"])

  def read_meta(self, step: int) -> dict[str, Any]:
    """The JSON ``meta`` item of a step (data position, counters, best step)."""
    try:
      out = self._mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001 - any read failure becomes one CheckpointError
      raise CheckpointError(
        f"cannot read the metadata of checkpoint step {step} "
        f"in {self.directory}: {one_line(e, 400, with_type=True)}"
      ) from e
    return dict(out["meta"])

  def metrics(self, step: int) -> dict | None:
    """The metrics ``step`` was saved with (None: a step written before steps
    carried them)."""
    if step not in self._metrics:
      try:
        out = self._mgr.metrics(step)
      except Exception as e:  # noqa: BLE001 - orbax and its JSON reader raise many types
        raise CorruptCheckpointError(
          step,
          f"checkpoint step {step} in {self.directory}: its metrics are unreadable "
          f"({one_line(e, 200, with_type=True)})",
        ) from None
      self._metrics[step] = None if out is None else dict(out)
    return self._metrics[step]

  def _ranked(self) -> list[tuple[tuple[float, int], int]]:
    """(rank, step) of the kept steps that have the metric, best first: those
    orbax lists (a save in flight included) that were committed when it
    opened the directory or saved since."""
    steps = [
      s for s in self._mgr.all_steps() if s in self._committed_at_open or s in self._saved_here
    ]
    out = [(self.best.rank(self.metrics(s)), s) for s in steps]
    legacy = self.legacy_best()
    if legacy is not None:
      out.append((self.best.rank(legacy), int(legacy["step"])))
    return sorted(((r, s) for r, s in out if r is not None), reverse=True)

  def best_step(self) -> int | None:
    """The best committed step by :attr:`best` (None: no step has the metric)."""
    ranked = self._ranked() if self.best is not None else []
    return ranked[0][1] if ranked else None

  def is_among_best(self, step: int, row: dict) -> bool:
    """Whether the evaluation ``row`` of ``step`` (newer than every saved
    step) ranks among the ``best.keep`` best: saved now, it would be kept."""
    if self.best is None:
      return False
    rank = self.best.rank(eval_metrics(step, row))
    if rank is None:
      return False
    ranked = self._ranked()
    return len(ranked) < self.best.keep or rank > ranked[self.best.keep - 1][0]

  def close(self) -> None:
    """Waits for the save in flight; a write error not yet raised is raised."""
    if self._manager is None:
      return
    error = None
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # noqa: BLE001 - kept, raised after the manager is closed
      error = e
    manager, self._manager = self._manager, None
    try:
      manager.close()
    except Exception:  # noqa: BLE001 - the error, if any, is the one above
      pass
    if error is not None and not self._failed:
      self._raise_write_error(error)
