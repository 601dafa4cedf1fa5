"""Data: tasks by name, and the checkpointable training iterator."""

from __future__ import annotations

from attention_jax.data import long_range, synthetic
from attention_jax.data.vocab import BOS, EOS, PAD, UNK, Vocabulary

SYNTHETIC_TASKS = tuple(sorted(synthetic.TARGET_FNS))
LONG_RANGE_TASKS = long_range.TASKS


LM_TASKS = ("text",)   # character-level LM on data.train_path (text_lm.py)


def is_known_task(task: str) -> bool:
  return task in SYNTHETIC_TASKS or task in LM_TASKS or task in LONG_RANGE_TASKS


def describe_tasks() -> str:
  return ", ".join(repr(t) for t in (*SYNTHETIC_TASKS, *LM_TASKS, *LONG_RANGE_TASKS))


def build_task(config):
  """The task object of ``config.data.task``."""
  if config.data.task in SYNTHETIC_TASKS:
    return synthetic.SyntheticTask(config)
  if config.data.task == "text":
    from attention_jax.data import text_lm
    return text_lm.TextLMTask(config)
  if config.data.task in LONG_RANGE_TASKS:
    return long_range.LongRangeTask(config)
  raise ValueError(f"unknown data.task {config.data.task!r}")
