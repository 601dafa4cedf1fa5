"""A run's directory: its ``config.json``, resume checks, and the one loader.

This is the only module that reads or writes ``WORKDIR/config.json`` (the
resolved config of the run, written at its start). Every tool that needs a
trained run — evaluation, translation, comparison, generation, the gradient
instruments, sweeps, probes — calls :func:`load`, which executes no config
file: it rebuilds the config from ``config.json`` (keys added to the schema
since the run was written take their defaults, in memory; the file is never
rewritten), the task from the vocabularies and tokenizers saved beside it,
and the train state from a checkpoint.

Layout of a workdir: ``config.json``, ``env.json`` (one record per start:
:mod:`attention_jax.environment`), ``metrics.jsonl``, ``tb/``,
``checkpoints/`` (orbax, :mod:`attention_jax.checkpoint`), the task's
vocabularies (``vocab_src.txt``, ``vocab_tgt.txt``, ``tokenizer.json``,
``spm_*.model``), and the outputs of the tools (``eval/``, ``gradients/``,
``compare/``, ``probe/``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from flax import nnx

from attention_jax import checkpoint as checkpoint_lib
from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import objectives
from attention_jax import step as step_lib
from attention_jax.errors import ConfigError, ResumeRefused, WorkdirError, one_line

CONFIG_NAME = "config.json"
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
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(config_lib.to_json(config))
  os.replace(tmp, path)


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
    config_lib.validate(config)
  except (OSError, ValueError, ConfigError) as e:
    raise WorkdirError(f"{path}: {one_line(e)}") from None
  return config


def resolve_step(workdir: str, step: int | str | None = None) -> int:
  """The checkpoint step that ``step`` names: a committed step number,
  ``"best"`` (the best dev BLEU) or None (the newest). WorkdirError if none."""
  ckpt_dir = checkpoint_dir(workdir)
  ckpt = checkpoint_lib.Checkpointer(ckpt_dir, create=False)
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
          f"no best checkpoint in {ckpt_dir}: no evaluation of this run reported bleu"
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


def build_run(config, workdir: str | None = None, task=None) -> Run:
  """A freshly initialized run. ``workdir``: where the task finds its saved
  vocabularies/tokenizers; ``task``: one already built (else built here)."""
  task = data_lib.build_task(config, workdir) if task is None else task
  graphdef, state, tx, schedule = step_lib.create_state(
    config, len(task.src_vocab), len(task.tgt_vocab)
  )
  return Run(
    config, task, objectives.get(task.objective, task, config), graphdef, state, tx, schedule
  )


def load(workdir: str, step: int | str | None = None) -> Run:
  """The trained run in ``workdir`` at checkpoint ``step`` (a number,
  ``"best"`` for the best dev BLEU, None for the newest good one).

  Every failure is one :class:`WorkdirError` line: no ``config.json``, an
  invalid config, no checkpoint, no such step, or a checkpoint that does not
  fit the model the config describes.
  """
  config = read_config(workdir)
  ckpt_dir = checkpoint_dir(workdir)
  if step is not None:
    step = resolve_step(workdir, step)
  elif not has_checkpoint(workdir):
    resolve_step(workdir)  # raises: no checkpoint
  ckpt = checkpoint_lib.Checkpointer(ckpt_dir, create=False)
  try:
    try:
      run = build_run(config, workdir)
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
  changes = [] if old is None else config_lib.config_changes(old, config)
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
  steering = [c for c in changes if not config_lib.is_resume_free(c[0], old, config)]
  if steering and not allow_config_change:
    raise ResumeRefused(
      f"cannot resume {workdir} from step {step}: the config differs from "
      f"the run's config.json in {format_changes(steering)}; pass "
      "--allow_config_change to continue with the new values, or use a new "
      "--workdir"
    )
  return changes


def record_changes(workdir: str, step: int, changes) -> None:
  """Appends a resumed run's config changes to ``config_changes.jsonl``."""
  with open(os.path.join(workdir, "config_changes.jsonl"), "a", encoding="utf-8") as f:
    f.write(json.dumps({"step": step, "changes": {k: [a, b] for k, a, b in changes}}) + "\n")
