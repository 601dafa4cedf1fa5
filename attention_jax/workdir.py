"""A run's directory: its ``config.json``, resume checks, and the one loader.

The only module that reads or writes ``WORKDIR/config.json`` (the resolved config, written
at the run's start). Every tool that needs a trained run calls :func:`load`, which executes
no config file: it rebuilds the config from ``config.json`` (keys added to the schema since
take their defaults, in memory; the file is never rewritten), the task from the
vocabularies and tokenizers saved beside it, and the train state from a checkpoint.
Documented in docs/reliability.md#the-workdir.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from absl import logging
from flax import nnx

from attention_jax import checkpoint as checkpoint_lib
from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import fileio, objectives, validation
from attention_jax import step as step_lib
from attention_jax.errors import ConfigError, DataChanged, ResumeRefused, WorkdirError, one_line

CONFIG_NAME = "config.json"
DATA_NAME = "data_fingerprint.json"  # the data inputs a run read (path, size, SHA-256)
CHANGES_NAME = "config_changes.jsonl"
CHECKPOINTS = "checkpoints"


def config_path(workdir: str) -> str:
  return os.path.join(workdir, CONFIG_NAME)


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(workdir, CHECKPOINTS)


# --------------------------------------------------------------------------
# config.json


def write_config(workdir: str, config) -> None:
  """Writes the (resolved) config as ``config.json``, atomically."""
  path = config_path(workdir)
  fileio.atomic_write_text(path, config_lib.to_json(config))


def read_config_dict(workdir: str) -> dict:
  """``config.json`` as written (a dict). Raises OSError or ValueError."""
  with open(config_path(workdir), encoding="utf-8") as f:
    return json.load(f)


def read_config(workdir: str):
  """The run's config, validated, with keys newer than the run at their
  defaults (in memory). Raises WorkdirError naming the file."""
  path = config_path(workdir)
  if not os.path.isfile(path):
    raise WorkdirError(f"{path} not found: is {workdir} a workdir?")
  try:
    config = config_lib.with_defaults(read_config_dict(workdir))
    validation.validate(config)
  except (OSError, ValueError, ConfigError) as e:
    raise WorkdirError(f"{path}: {one_line(e)}") from None
  return config


def best_of(config) -> checkpoint_lib.Best:
  """What ranks a run's checkpoints (``checkpoint.best_*``, defaults per objective)."""
  metric, mode = objectives.best_metric(config, data_lib.objective_name(config.data.task))
  return checkpoint_lib.Best(metric, mode, config.checkpoint.best_to_keep)


def find_step(workdir: str, step: int | str | None = None) -> int:
  """The checkpoint step that ``step`` names: a committed step number,
  ``"best"`` (the best by ``checkpoint.best_metric``) or None (the newest).
  WorkdirError if none."""
  ckpt_dir = checkpoint_dir(workdir)
  best = best_of(read_config(workdir)) if step == "best" else None
  ckpt = checkpoint_lib.Checkpointer(ckpt_dir, best=best, create=False)
  try:
    steps = ckpt.committed_steps()
    if not steps:
      raise WorkdirError(
        f"no checkpoint in {ckpt_dir}: train first with experiments.run --workdir {workdir}"
      )
    if step is None:
      return steps[-1]
    if step == "best":
      best = ckpt.best_step()
      if best is None:
        raise WorkdirError(
          f"no best checkpoint in {ckpt_dir}: no evaluation of this run reported "
          f"{best.metric} (checkpoint.best_metric)"
        )
      return best
    if step not in steps:
      raise WorkdirError(f"no checkpoint step {step} in {ckpt_dir}; saved steps: {steps}")
    return step
  finally:
    ckpt.close()


def has_checkpoint(workdir: str) -> bool:
  """Whether ``workdir`` holds a config and a committed checkpoint."""
  if not os.path.isfile(config_path(workdir)):
    return False
  return (
    checkpoint_lib.Checkpointer(checkpoint_dir(workdir), create=False).latest_step() is not None
  )


# --------------------------------------------------------------------------
# A run: config, task, objective, model and state


@dataclasses.dataclass
class Run:
  """Everything a run needs, rebuilt the same way for training and loading."""

  config: Any
  task: Any
  objective: Any
  graphdef: Any
  state: step_lib.TrainState
  tx: Any
  schedule: Any

  @property
  def model(self) -> nnx.Module:
    """The model with this state's parameters (float32, as trained)."""
    return nnx.merge(self.graphdef, self.state.params)

  @property
  def step(self) -> int:
    return int(self.state.step)


def make_run(config, workdir: str | None = None, task=None) -> Run:
  """A freshly initialized run. ``workdir``: where the task finds its saved
  vocabularies/tokenizers; ``task``: one already built (else built here)."""
  task = data_lib.make_task(config, workdir) if task is None else task
  graphdef, state, tx, schedule = step_lib.make_train_state(
    config, len(task.src_vocab), len(task.tgt_vocab)
  )
  return Run(
    config, task, objectives.get(task.objective, task, config), graphdef, state, tx, schedule
  )


def load(workdir: str, step: int | str | None = None) -> Run:
  """The trained run in ``workdir`` at checkpoint ``step`` (a number,
  ``"best"`` for the best by ``checkpoint.best_metric``, None for the newest good one).

  Every failure is one :class:`WorkdirError` line: no ``config.json``, an
  invalid config, no checkpoint, no such step, or a checkpoint that does not
  fit the model the config describes.
  """
  config = read_config(workdir)
  ckpt_dir = checkpoint_dir(workdir)
  if step is not None:
    step = find_step(workdir, step)
  elif not has_checkpoint(workdir):
    find_step(workdir)  # raises: no checkpoint
  ckpt = checkpoint_lib.Checkpointer(ckpt_dir, create=False)
  try:
    try:
      run = make_run(config, workdir)
    except ConfigError as e:
      raise WorkdirError(f"{workdir}: {one_line(e)}") from None
    try:
      run.state, _ = ckpt.restore(
        run.state, step, on_corrupt=config.checkpoint.get("on_corrupt", "stop")
      )
    except checkpoint_lib.CheckpointError as e:
      raise WorkdirError(
        f"the checkpoint in {ckpt_dir} does not fit the model in "
        f"{config_path(workdir)} (model.name={config.model.name!r}, "
        f"hidden_size={config.model.hidden_size}); was it written by another "
        f"model? ({one_line(e)})"
      ) from None
  finally:  # also on a failed restore: an open manager spews at exit
    ckpt.close()
  return run


# --------------------------------------------------------------------------
# Resuming


# Keys a resumed run may change without --allow_config_change: they steer
# logging, evaluation, checkpointing or recovery, not the training trajectory.
# (A prefix ending in "." covers a section.) train.steps is handled apart.
RESUME_FREE_KEYS = (
  "eval.",
  "checkpoint.",
  "train.log_every_steps",
  "train.skip_nonfinite",
  "train.max_consecutive_nonfinite",
  "train.num_devices",
  "train.profile_steps",
  "data.tfds_data_dir",
  "model.attention_impl",
)


def config_changes(old: dict, new) -> list[tuple[str, Any, Any]]:
  """``(key, old, new)`` for every leaf that differs; ``old`` is the run's
  ``config.json`` as a dict. A key missing from ``old`` (added to
  ``base_config`` since) counts as its default."""
  defaults = config_lib.flatten(config_lib.base_config())
  before = config_lib.flatten(old)
  after = config_lib.flatten(json.loads(config_lib.to_json(new)))
  out = []
  for key in sorted(set(before) | set(after)):
    old_value = before.get(key, defaults.get(key))
    new_value = after.get(key, defaults.get(key))
    if old_value != new_value:
      out.append((key, old_value, new_value))
  return out


def is_resume_free(key: str, old: dict, new) -> bool:
  """Whether a resumed run may change ``key`` without --allow_config_change.

  ``train.steps`` may change when the schedule does not depend on it (constant,
  rsqrt): training longer then continues the same trajectory. With ``cosine``
  it changes the learning rate of every remaining step, so it needs the flag.
  """
  if key == "train.steps":
    old_schedule = config_lib.flatten(old).get("train.schedule")
    free = step_lib.STEPS_FREE_SCHEDULES
    return old_schedule in free and new.train.schedule in free
  return any(key.startswith(p) if p.endswith(".") else key == p for p in RESUME_FREE_KEYS)


def format_changes(changes) -> str:
  return ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in changes)


def check_resume(
  config, workdir: str, ckpt, step: int, task, allow_config_change: bool = False
) -> list:
  """Refuses a config that cannot continue checkpoint ``step`` of ``workdir``.

  Raises :class:`ResumeRefused` (one line) when the parameter or optimizer
  shapes differ from the checkpoint's (naming the leaves and the config keys
  that changed), or when keys that steer training changed and
  ``allow_config_change`` is false (listing them; see
  ``config.is_resume_free``). Reads only. Returns the changed keys as
  ``(key, old, new)``.
  """
  try:
    old = read_config_dict(workdir)
  except (OSError, ValueError) as e:
    if not allow_config_change:
      raise ResumeRefused(
        f"cannot resume {workdir}: its config {config_path(workdir)} is "
        f"unreadable ({one_line(e, with_type=True)}), so the "
        "new config cannot be checked against it; pass --allow_config_change "
        "to resume anyway, or use a new --workdir"
      ) from None
    old = None
  changes = [] if old is None else config_changes(old, config)
  diffs = checkpoint_lib.compare_shapes(
    ckpt.record(step)["tree"], step_lib.abstract_state(config, task)
  )
  if diffs:
    n_params = sum(d.startswith("params/") for d in diffs)
    more = f"; and {len(diffs) - 4} more" if len(diffs) > 4 else ""
    raise ResumeRefused(
      f"cannot resume {workdir} from step {step}: the config changes the "
      f"shapes of {n_params} parameters ({len(diffs)} saved arrays with the "
      "optimizer state): "
      + "; ".join(diffs[:4])
      + more
      + ". Config keys changed: "
      + (format_changes(changes) or "none")
      + ". Use a new --workdir, or restore the old values"
    )
  steering = [c for c in changes if not is_resume_free(c[0], old, config)]
  if steering and not allow_config_change:
    raise ResumeRefused(
      f"cannot resume {workdir} from step {step}: the config differs from "
      f"the run's config.json in {format_changes(steering)}; pass "
      "--allow_config_change to continue with the new values, or use a new "
      "--workdir"
    )
  return changes


def record_changes(workdir: str, step: int, changes) -> None:
  """Appends a resumed run's config (and data) changes to ``config_changes.jsonl``."""
  with open(os.path.join(workdir, CHANGES_NAME), "a", encoding="utf-8") as f:
    f.write(json.dumps({"step": step, "changes": {k: [a, b] for k, a, b in changes}}) + "\n")


# --------------------------------------------------------------------------
# The data a run read


def data_fingerprint(config) -> dict:
  """The data inputs of ``config``: each local file's key, path, size and
  SHA-256, and a TFDS dataset's name, version and splits
  (``data.inputs``)."""
  files, tfds_record = data_lib.inputs(config)
  out: dict = {
    "files": [
      {
        "key": k,
        "path": os.path.abspath(f),
        "size": os.path.getsize(f),
        "sha256": fileio.sha256_file(f),
      }
      for k, f in files
    ]
  }
  if tfds_record is not None:
    out["tfds"] = tfds_record
  return out


def read_fingerprint(workdir: str) -> dict | None:
  """The recorded fingerprint (None: a run from before they were recorded, or
  an unreadable record, which a new one then replaces)."""
  try:
    with open(os.path.join(workdir, DATA_NAME), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def check_data(workdir: str, step: int, new: dict, allow_data_change: bool = False) -> list:
  """Refuses to resume checkpoint ``step`` of ``workdir`` on data that differ
  from the data its run read. The content decides (SHA-256): a file moved to
  another path with the same bytes is a warning. Raises
  :class:`DataChanged` naming the file and both hashes unless
  ``allow_data_change``. Reads only. Returns the changes as
  ``(what, old, new)`` for ``config_changes.jsonl``."""
  old = read_fingerprint(workdir)
  if old is None:
    return []
  changes = []
  by_key: dict[str, list] = {}
  for f in new.get("files", []):
    by_key.setdefault(f["key"], []).append(f)
  for key in sorted({f["key"] for f in old.get("files", [])} | set(by_key)):
    before = [f for f in old.get("files", []) if f["key"] == key]
    now = by_key.get(key, [])
    for i in range(max(len(before), len(now))):
      a = before[i] if i < len(before) else None
      b = now[i] if i < len(now) else None
      if a and b and a["sha256"] == b["sha256"]:
        if a["path"] != b["path"]:
          logging.warning(
            "%s: %s moved to %s (same content, sha256 %s)", key, a["path"], b["path"], b["sha256"]
          )
        continue
      what = f"{key} {(b or a)['path']}"
      if a and b:
        detail = (
          f"{key} {b['path']} has sha256 {b['sha256']} ({b['size']} bytes), "
          f"{a['sha256']} ({a['size']} bytes) when the run read "
          + ("it" if a["path"] == b["path"] else a["path"])
        )
      elif a:
        detail = f"{key} {a['path']} (sha256 {a['sha256']}) is no longer an input"
      else:
        detail = f"{key} {b['path']} (sha256 {b['sha256']}) is a new input"
      changes.append(
        (f"data: {what}", a and f"sha256 {a['sha256']}", b and f"sha256 {b['sha256']}", detail)
      )
  if old.get("tfds") != new.get("tfds"):
    a, b = old.get("tfds"), new.get("tfds")
    changes.append(("data: tfds", a, b, f"the TFDS data changed: {a} -> {b}"))
  if changes and not allow_data_change:
    raise DataChanged(
      f"cannot resume {workdir} from step {step}: its data changed: "
      + "; ".join(c[3] for c in changes)
      + ". Pass --allow_data_change to continue on the new data, or use a new --workdir"
    )
  for c in changes:
    logging.warning("resuming on changed data (--allow_data_change): %s", c[3])
  return [c[:3] for c in changes]


def write_fingerprint(workdir: str, fingerprint: dict) -> None:
  """Writes ``data_fingerprint.json`` (atomically) if it differs from the
  recorded one; nothing for a task that reads no files."""
  if not fingerprint.get("files") and "tfds" not in fingerprint:
    return
  if read_fingerprint(workdir) == fingerprint:
    return
  path = os.path.join(workdir, DATA_NAME)
  fileio.atomic_write_json(path, fingerprint, indent=1, sort_keys=True)
