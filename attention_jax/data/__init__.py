"""Data: the tasks by ``data.task``, one registry, one dispatch point (docs/data.md).

Synthetic sequence-to-sequence tasks (:mod:`.synthetic`), long-range tasks for recurrent
networks (:mod:`.long_range`), parallel text (:mod:`.parallel_text`: ``files`` and
``tfds:NAME``) and character-level text (:mod:`.text`), each following the protocol of
:mod:`.batching`. Each task takes a frozen dataclass of the ``data.*`` keys it reads, built
at one boundary (:func:`task_config`), from which :func:`make_task` builds the task and
:func:`config_keys` derives the keys it reads (validation refuses the others).
"""

from __future__ import annotations

import os

from attention_jax import config_fields
from attention_jax.data import long_range, parallel_text, synthetic, text

SYNTHETIC_TASKS = tuple(sorted(synthetic.TASKS))
LONG_RANGE_TASKS = long_range.TASKS  # adding, copy_memory, temporal_order
PARALLEL_TEXT_TASKS = ("files", "tfds:NAME")
LM_TASKS = ("text",)

# data.task -> the class serving it ("tfds:NAME" is matched by prefix).
TASKS = {
  **{name: synthetic.SyntheticTask for name in SYNTHETIC_TASKS},
  **{name: long_range.LongRangeTask for name in LONG_RANGE_TASKS},
  "files": parallel_text.ParallelTextTask,
  "tfds:NAME": parallel_text.ParallelTextTask,
  "text": text.TextLMTask,
}


def _key(task: str) -> str:
  if task.startswith("tfds:"):
    return "tfds:NAME" if len(task) > len("tfds:") and task != "tfds:NAME" else ""
  return task


def is_known_task(task: str) -> bool:
  return _key(task) in TASKS


def describe_tasks() -> str:
  return ", ".join(
    repr(t) for t in (*SYNTHETIC_TASKS, *PARALLEL_TEXT_TASKS, *LM_TASKS, *LONG_RANGE_TASKS)
  )


def describe_synthetic() -> str:
  return ", ".join(repr(t) for t in SYNTHETIC_TASKS)


def is_text_task(task: str) -> bool:
  """Parallel text read through TFDS (``files`` or ``tfds:NAME``)."""
  return TASKS.get(_key(task)) is parallel_text.ParallelTextTask


def task_class(task: str):
  """The class serving ``data.task``; ValueError for an unknown task."""
  if not is_known_task(task):
    raise ValueError(f"unknown data.task {task!r}; allowed: {describe_tasks()}")
  return TASKS[_key(task)]


def objective_name(task: str) -> str:
  """The objective (a name in ``attention_jax.objectives``) ``data.task`` trains."""
  if task in LONG_RANGE_TASKS:
    return long_range.SPECS[task].objective
  return task_class(task).objective


# Context fields (not data.* keys) -> how a config gives them.
_CONTEXT = {
  "seed": lambda config: config.seed,
  "batch_size": lambda config: config.train.batch_size,
}


def task_config(config):
  """The frozen ``data.*`` settings of ``config.data.task`` (its class's
  ``config_class``); ValueError for an unknown task."""
  cls = task_class(config.data.task).config_class
  return config_fields.from_section(cls, config.data, lambda key: _CONTEXT[key](config))


def config_keys(config) -> tuple[str, ...]:
  """The ``data.*`` keys (without the prefix) that ``config.data.task`` reads."""
  return config_fields.keys_read(task_config(config))


def make_task(config, workdir: str | None = None):
  """The task object of ``config.data.task``.

  ``workdir``: where a run keeps its vocabularies and tokenizer models; a task
  that finds them there reloads them instead of building them from the data.
  """
  return task_class(config.data.task)(task_config(config), workdir)


def inputs(config) -> tuple[list[tuple[str, str]], dict | None]:
  """What ``config``'s task reads from outside the workdir: ``(key, path)``
  of each local file (``files``: the TSV or ``.src``/``.tgt`` pair of each
  split; ``text``: the text files), and for ``tfds:NAME`` the dataset's name,
  version and split specs (else None). Synthetic tasks read nothing. A path
  that does not exist is left out (the task's reader names it)."""
  settings = task_config(config)
  task = settings.task
  files: list[tuple[str, str]] = []
  if task == "files":
    for role in parallel_text.ROLES:
      path = getattr(settings, f"{role}_path")
      if path:
        try:
          files += [(f"data.{role}_path", f) for f in parallel_text.expand_paths(path, "")]
        except ValueError:  # DataError: not found
          continue
  elif task == "text":
    paths = {k: getattr(settings, k) for k in ("train_path", "eval_path")}
    files = [(f"data.{k}", path) for k, path in paths.items() if path]
  tfds_record = parallel_text.catalog_record(settings) if task.startswith("tfds:") else None
  return [(k, f) for k, f in files if os.path.isfile(f)], tfds_record


def save_task_files(task, workdir: str) -> None:
  """Writes ``vocab_src.txt``/``vocab_tgt.txt`` (and the task's tokenizer
  files, if it has any) into ``workdir``."""
  if hasattr(task, "save"):
    task.save(workdir)
  else:
    task.src_vocab.save(os.path.join(workdir, "vocab_src.txt"))
    task.tgt_vocab.save(os.path.join(workdir, "vocab_tgt.txt"))
