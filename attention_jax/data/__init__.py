"""Data: tasks by name, and the checkpointable training iterator."""

from __future__ import annotations

from typing import Any

import numpy as np

from attention_jax.data import synthetic
from attention_jax.data.vocab import BOS, EOS, PAD, UNK, Vocabulary

SYNTHETIC_TASKS = tuple(sorted(synthetic.TARGET_FNS))


def is_known_task(task: str) -> bool:
  return task in SYNTHETIC_TASKS


def describe_tasks() -> str:
  return ", ".join(repr(t) for t in SYNTHETIC_TASKS)


class TrainIterator:
  """Yields training batches; its whole state is the index of the next batch."""

  def __init__(self, task, start: int = 0):
    self.task = task
    self.index = start

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self.task.train_batch(self.index)
    self.index += 1
    return batch

  def get_state(self) -> dict[str, Any]:
    return {"index": self.index}

  def set_state(self, state: dict[str, Any]) -> None:
    self.index = int(state["index"])


def build_task(config):
  """The task object of ``config.data.task``."""
  if config.data.task in SYNTHETIC_TASKS:
    return synthetic.SyntheticTask(config)
  raise ValueError(f"unknown data.task {config.data.task!r}")
