"""Per-point analyses after training (``python -m experiments.analyze_point``, in the point's
own subprocess): ``by_length``, ``gradients``, ``probe``."""

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
  """Scores the model in ``workdir`` per source length 1..``max_length`` (default 2× the
  training limit; about ``examples_per_length`` test sources each) with the decoding and
  metrics of ``experiments.evaluate`` (``evaluation.collect``) → ``eval/by_length.csv``:
  token accuracy (teacher-forced), exact match, BLEU, chrF and, with a gold alignment,
  the attention's alignment accuracy and gold mass."""
  run = workdir_lib.load(workdir)
  config = run.config
  lo, train_max = config.data.train_min_length, config.data.train_max_length
  max_length = max_length or 2 * train_max
  c = config.copy_and_resolve_references()
  c.data.eval_min_length, c.data.eval_max_length = 1, max_length
  c.data.eval_examples = examples_per_length * max_length
  task = data_lib.make_task(c)
  records = evaluation.collect(run, run.state.params, c, "test", task=task)
  rows = []
  for r in metrics_lib.summarize_by_length(records, list(range(1, max_length + 1))):
    L = r["min_length"]
    if not r["count"] or L > max_length:
      continue
    row = {"length": L, "examples": r["count"]}
    row.update({k: r[k] for k in ("token_accuracy", "sequence_accuracy")})
    row.update(bleu=r.get("bleu"), chrf=r.get("chrf"), in_training_range=int(lo <= L <= train_max))
    row["length_unit"] = task.length_unit
    if records.alignment is not None:
      row.update({k: r[k] for k in ("alignment_accuracy", "gold_attention_mass")})
    rows.append(row)
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  write_csv(os.path.join(workdir, BY_LENGTH_CSV), rows)
  return rows


def gradient_curves(workdir: str, examples: int = 64) -> dict[str, Any]:
  """‖∂L/∂h_t‖ of the point's cell at initialization and trained
  (``gradients.analyze_workdir``) → ``gradients/{gradients,decay}.csv`` and ``gradients.png``."""
  model = workdir_lib.read_config(workdir).model
  label = "attention" if model.pooling == "attention" else model.cell
  variant = (label, model.cell, model.pooling)
  return gradients.analyze_workdir(workdir, variants=[variant], examples=examples)


def probe_point(workdir: str) -> dict[str, Any] | None:
  """``attention_jax.probe`` on the point → ``probe/`` (None: no recurrent state, skipped)."""
  config = workdir_lib.read_config(workdir)
  if config.model.name not in probe_lib.PROBE_MODELS:
    name = config.model.name
    logging.info("probe: skipped %s (model %r has no recurrent state to probe)", workdir, name)
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
