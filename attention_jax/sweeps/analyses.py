"""Per-point analyses of a trained point, run in the point's own subprocess
(``python -m experiments.analyze_point``) after training.

``by_length``: accuracy and BLEU per source length up to twice the training
limit (and, for attention models on tasks with a gold alignment, how their
attention matches it); ``gradients``: the gradient-through-time curves of the
point's cell; ``probe``: linear probes of what the context vector and the
decoder states hold (recurrent encoder–decoders; other points are skipped).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from absl import logging

from attention_jax import data as data_lib
from attention_jax import evaluation, gradients
from attention_jax import metrics as metrics_lib
from attention_jax import probe as probe_lib
from attention_jax import workdir as workdir_lib
from attention_jax.errors import SweepError
from attention_jax.sweeps.spec import BY_LENGTH_CSV
from attention_jax.sweeps.tables import write_csv

# Sources per length in by_length.csv: with 100, a 95% interval of one seed's
# exact match is at most ±0.1 wide (binomial, worst case p = 0.5).
EXAMPLES_PER_LENGTH = 100


def eval_by_length(
  workdir: str, max_length: int | None = None, examples_per_length: int = EXAMPLES_PER_LENGTH
) -> list[dict[str, Any]]:
  """Accuracy and BLEU of the trained model in ``workdir`` per source length.

  Sources of lengths 1..``max_length`` (default 2× the training limit, about
  ``examples_per_length`` of each) are drawn from the task's held-out
  ``test`` split and scored by ``attention_jax.evaluation.collect`` — the
  decoding (``eval.*``: greedy or beam) and metrics of
  ``experiments.evaluate``, BLEU/chrF against the raw references — with one
  bucket per length. Writes ``workdir/eval/by_length.csv``: ``length``
  (source length in ``length_unit``: symbols, characters for ``addition``,
  words for ``reorder``), ``examples``, ``token_accuracy`` (teacher-forced),
  ``sequence_accuracy`` (exact match of the decoded output), ``bleu``,
  ``chrf``, ``in_training_range``, ``length_unit``; for attention models on
  tasks with a gold alignment also ``alignment_accuracy`` and
  ``gold_attention_mass`` (teacher-forced; ``attention_jax.evaluation``).
  """
  run = workdir_lib.load(workdir)
  config = run.config
  lo, train_max = config.data.train_min_length, config.data.train_max_length
  max_length = max_length or 2 * train_max
  c = config.copy_and_resolve_references()
  c.data.eval_min_length = 1
  c.data.eval_max_length = max_length
  c.data.eval_examples = examples_per_length * max_length
  task = data_lib.build_task(c)
  records = evaluation.collect(run, run.state.params, c, "test", task=task)
  rows = []
  for r in metrics_lib.summarize_by_length(records, list(range(1, max_length + 1))):
    L = r["min_length"]
    if not r["count"] or L > max_length:
      continue
    rows.append(
      {
        "length": L,
        "examples": r["count"],
        "token_accuracy": r["token_accuracy"],
        "sequence_accuracy": r["sequence_accuracy"],
        "bleu": r.get("bleu"),
        "chrf": r.get("chrf"),
        "in_training_range": int(lo <= L <= train_max),
        "length_unit": task.length_unit,
        **(
          {k: r[k] for k in ("alignment_accuracy", "gold_attention_mass")}
          if records.alignment is not None
          else {}
        ),
      }
    )
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  write_csv(os.path.join(workdir, BY_LENGTH_CSV), rows)
  return rows


def gradient_curves(workdir: str, examples: int = 64) -> dict[str, Any]:
  """‖∂L/∂h_t‖ of the point's own cell at initialization and after training.

  ``attention_jax.gradients.analyze_workdir`` (float64, readout included,
  fitted decay per step) → ``workdir/gradients/{gradients,decay}.csv`` and
  ``gradients.png``.
  """
  model = workdir_lib.read_config(workdir).model
  label = "attention" if model.pooling == "attention" else model.cell
  variant = (label, model.cell, model.pooling)
  return gradients.analyze_workdir(workdir, variants=[variant], examples=examples)


def probe_point(workdir: str) -> dict[str, Any] | None:
  """``attention_jax.probe`` on the point (test sources, 200 per length, the
  default decoder lengths) → ``workdir/probe/``; a point whose model has no
  recurrent state to probe is skipped with a log line (None)."""
  config = workdir_lib.read_config(workdir)
  if config.model.name not in probe_lib.PROBE_MODELS:
    logging.info(
      "probe: skipped %s (model %r has no recurrent state to probe)", workdir, config.model.name
    )
    return None
  return probe_lib.probe_workdir(workdir)


ANALYSES: dict[str, Callable[[str], Any]] = {
  "by_length": eval_by_length,
  "gradients": gradient_curves,
  "probe": probe_point,
}


def analyze_point(workdir: str, names: Iterable[str]) -> None:
  for name in names:
    if name not in ANALYSES:
      raise SweepError(f"unknown analysis {name!r}; known: {', '.join(sorted(ANALYSES))}")
  for name in names:
    ANALYSES[name](workdir)
