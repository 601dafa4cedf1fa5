"""Checkpoints through orbax — the only module that talks to orbax.

A step directory holds ``state`` (params, optimizer state, step, RNG as one
pytree) and ``meta`` (JSON: the data pipeline's position). Saves are
asynchronous by default; a save killed halfway leaves an
``N.orbax-checkpoint-tmp`` directory that ``latest_step`` and restore ignore.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Saves and restores training state under ``directory``."""

  def __init__(self, directory: str, *, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, create=True,
        enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> bool:
    return self._manager.save(
        step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True)

  def restore(self, target: Any, step: int | None = None
              ) -> tuple[Any, dict[str, Any]]:
    """Restores ``step`` (default: latest) into the structure of ``target``.

    ``target`` is a pytree of arrays or ``jax.ShapeDtypeStruct`` (with
    shardings) of the same structure as what was saved.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(_abstract, target)
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out["state"], dict(out["meta"])

  def wait_until_finished(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _abstract(x):
  if isinstance(x, jax.ShapeDtypeStruct):
    return x
  sharding = getattr(x, "sharding", None)
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)
