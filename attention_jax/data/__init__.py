"""Data: tasks by name, and the checkpointable training iterator.

``data.task`` is one of the synthetic tasks (:mod:`.synthetic`), ``files``
(local parallel text) or ``tfds:NAME`` (a TFDS catalog dataset), both through
:mod:`.text`. :func:`build_task` is the one dispatch point.
"""

from __future__ import annotations

import os

from attention_jax.data import long_range, synthetic
from attention_jax.data.vocab import BOS, EOS, PAD, UNK, Vocabulary

SYNTHETIC_TASKS = tuple(sorted(synthetic.TASKS))
TEXT_TASKS = ("files", "tfds:NAME")
LM_TASKS = ("text",)   # character-level LM on data.train_path (text_lm.py)
LONG_RANGE_TASKS = long_range.TASKS  # adding, copy_memory, temporal_order


def is_known_task(task: str) -> bool:
  return (task in SYNTHETIC_TASKS or task in LM_TASKS or task == "files"
          or task in LONG_RANGE_TASKS
          or (task.startswith("tfds:") and len(task) > len("tfds:")))


def describe_tasks() -> str:
  return ", ".join(repr(t) for t in (*SYNTHETIC_TASKS, *TEXT_TASKS, *LM_TASKS,
                                     *LONG_RANGE_TASKS))


def is_text_task(task: str) -> bool:
  """Parallel text read through TFDS (``files`` or ``tfds:NAME``)."""
  return task == "files" or task.startswith("tfds:")


def task_class(task: str):
  """The class serving ``data.task`` (imports the text modules on demand)."""
  if task in SYNTHETIC_TASKS:
    return synthetic.SyntheticTask
  if task in LONG_RANGE_TASKS:
    return long_range.LongRangeTask
  if task == "text":
    from attention_jax.data import text_lm
    return text_lm.TextLMTask
  if is_text_task(task):
    from attention_jax.data import text
    return text.ParallelTextTask
  raise ValueError(f"unknown data.task {task!r}")


def config_keys(config) -> tuple[str, ...]:
  """The ``data.*`` keys (without the prefix) that ``config.data.task`` reads."""
  return ("task", *task_class(config.data.task).config_keys(config))


def build_task(config, workdir: str | None = None):
  """The task object of ``config.data.task``.

  ``workdir``: where a run keeps its vocabularies and tokenizer models; a task
  that finds them there reloads them instead of building them from the data.
  """
  if config.data.task in SYNTHETIC_TASKS:
    return synthetic.SyntheticTask(config)
  if config.data.task in LONG_RANGE_TASKS:
    return long_range.LongRangeTask(config)
  if config.data.task == "text":
    from attention_jax.data import text_lm
    return text_lm.TextLMTask(config)
  if is_text_task(config.data.task):
    from attention_jax.data import text
    return text.ParallelTextTask(config, workdir)
  raise ValueError(f"unknown data.task {config.data.task!r}")


def save_task_files(task, workdir: str) -> None:
  """Writes ``vocab_src.txt``/``vocab_tgt.txt`` (and the task's tokenizer
  files, if it has any) into ``workdir``."""
  if hasattr(task, "save"):
    task.save(workdir)
  else:
    task.src_vocab.save(os.path.join(workdir, "vocab_src.txt"))
    task.tgt_vocab.save(os.path.join(workdir, "vocab_tgt.txt"))
