"""What a task trains and measures: its loss and its evaluation metrics.

A task names its objective (``task.objective``, a key of :data:`OBJECTIVES`); the training
loop is the same for all of them. What every objective provides is listed above
:data:`OBJECTIVES`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attention_jax import decoding
from attention_jax import metrics as metrics_lib
from attention_jax.data.vocab import PAD, UNK
from attention_jax.errors import ConfigError

# The metrics that can rank checkpoints, with the direction that is better.
METRIC_MODES = {
  "bleu": "max",
  "chrf": "max",
  "sequence_accuracy": "max",
  "token_accuracy": "max",
  "loss": "min",
  "perplexity": "min",
  "mse": "min",
}
BEST_MODES = ("max", "min")


class Seq2Seq:
  """Cross-entropy with teacher forcing; decoding for exact match and BLEU.

  Unbound (``Seq2Seq()``) it decodes greedily up to the target length and
  reports loss, perplexity, token and sequence accuracy. Bound to a task,
  config and split (``bind``, as ``workdir.make_run`` does for ``eval``) it
  decodes as ``eval.*`` says (``eval.beam_size`` 1 = greedy; output length
  from ``eval.max_length_a/b``) — the same code as ``experiments.evaluate`` —
  and adds corpus BLEU (and chrF with ``eval.chrf``) of the detokenized
  hypotheses against the split's raw references
  (``task.eval_references(split)``, found through each example's ``row``),
  each with its sacrebleu signature (``bleu_signature``, ``chrf_signature``).

  Attention models on tasks with a gold alignment (the batch has ``align``,
  the model's ``aux`` has ``"attention"``) also report how their
  teacher-forced attention matches it: ``alignment_accuracy`` and
  ``gold_attention_mass`` (``metrics.alignment_sums``).

  A decoder-only model (``gpt``) trains with the same loss: its
  ``model(src, tgt_in)`` scores the target positions of one sequence
  [source; BOS; target], so the loss covers the target tokens only.
  """

  rankable = ("bleu", "chrf", "sequence_accuracy", "token_accuracy", "loss", "perplexity")
  best_metric = "bleu"

  def __init__(self, task=None, config=None, split: str = "eval"):
    self.task = task
    self.config = config
    self.split = split

  def bind(self, task, config, split: str = "eval") -> Seq2Seq:
    return type(self)(task, config, split)

  def train_loss(self, model, batch, rng, config):
    logits, _ = model(batch["src"], batch["tgt_in"], dropout_rng=rng)
    loss_sum, n = metrics_lib.cross_entropy(logits, batch["tgt_out"], config.train.label_smoothing)
    correct = metrics_lib.argmax_correct(logits, batch["tgt_out"])
    n = jnp.maximum(n, 1.0)
    return loss_sum / n, {"token_accuracy": correct / n}

  def decode(self, model, src, tgt_len: int):
    if self.config is None:
      return decoding.greedy_search(model, src, tgt_len)
    return decoding.decode_from_config(model, src, self.config)

  def eval_batch(self, model, batch):
    src, tgt_out = batch["src"], batch["tgt_out"]
    logits, aux = model(src, batch["tgt_in"])
    loss, n = metrics_lib.cross_entropy_per_example(logits, tgt_out)
    hits = (jnp.argmax(logits, -1) == tgt_out) & (tgt_out != PAD)
    hyp = self.decode(model, src, tgt_out.shape[1])
    out = {
      "each_loss": loss,
      "each_tokens": n,
      "each_correct": hits.sum(axis=1).astype(jnp.float32),
      "each_exact": metrics_lib.sequence_correct(hyp.tokens, tgt_out),
      "each_src_length": (src != PAD).sum(axis=1),
      "each_src_unk": (src == UNK).any(axis=1),
      "each_hyp": hyp.tokens,
    }
    if "row" in batch:  # the example's index into the split's raw text
      out["each_row"] = batch["row"]
    if "align" in batch and aux.get("attention") is not None:
      sums = metrics_lib.alignment_sums(aux["attention"], batch["align"], tgt_out)
      out.update({f"each_align_{k}": v for k, v in sums.items()})
    return out

  def records(self, each) -> metrics_lib.ExampleRecords:
    """Per-example records of concatenated ``each_*``: hypotheses
    detokenized, references and source lengths (in ``task.length_unit``) the
    raw text's, row by row. Unbound: no text; lengths in source tokens."""
    task = self.task
    hyps, refs, lengths = [], [], each["each_src_length"]
    if task is not None:
      rows = each.get("each_row")
      if rows is None:
        rows = np.arange(len(each["each_loss"]))
      hyps = [metrics_lib.detokenize(task, r, "tgt") for r in each["each_hyp"]]
      raw = task.eval_references(self.split)
      refs = [raw[i] for i in rows]
      lengths = np.asarray(task.eval_source_lengths(self.split))[rows]
    alignment = {
      k[len("each_align_") :]: v for k, v in each.items() if k.startswith("each_align_")
    } or None
    return metrics_lib.ExampleRecords(
      src_length=lengths,
      loss=each["each_loss"],
      tokens=each["each_tokens"],
      correct=each["each_correct"],
      exact=each["each_exact"],
      hypotheses=hyps,
      references=refs,
      src_has_unk=each["each_src_unk"],
      alignment=alignment,
    )

  def finalize(self, sums, each):
    del sums
    r = self.records(each)
    out = metrics_lib.summarize(r, text=False)
    if self.task is not None:
      names = ["bleu"] + (["chrf"] if self.config is not None and self.config.eval.chrf else [])
      for name in names:
        out[name] = metrics_lib.corpus_score(name, r.hypotheses, r.references)
        out[f"{name}_signature"] = metrics_lib.signature(name)
    for key in ("count", "aligned_tokens", "unaligned_tokens"):
      out.pop(key, None)
    return out


class LanguageModel:
  """Next-token cross-entropy, −Σ_t log p(x_{t+1} | x_≤t), for decoder-only models.

  Batches: ``inputs [B, T]`` and ``targets [B, T]`` (inputs shifted by one);
  ``model(inputs, dropout_rng) -> logits [B, T, V]``. Reports ``loss`` (nats
  per token), ``perplexity = exp(loss)`` and ``token_accuracy``.
  """

  rankable = ("loss", "perplexity", "token_accuracy")
  best_metric = "loss"

  def train_loss(self, model, batch, rng, config):
    logits = model(batch["inputs"], dropout_rng=rng)
    loss_sum, n = metrics_lib.cross_entropy(logits, batch["targets"], config.train.label_smoothing)
    correct = metrics_lib.argmax_correct(logits, batch["targets"])
    n = jnp.maximum(n, 1.0)
    return loss_sum / n, {"token_accuracy": correct / n}

  def eval_batch(self, model, batch):
    logits = model(batch["inputs"])
    loss_sum, n = metrics_lib.cross_entropy(logits, batch["targets"])
    correct = metrics_lib.argmax_correct(logits, batch["targets"])
    return {"sum_loss": loss_sum, "sum_tokens": n, "sum_correct": correct}

  def finalize(self, sums, each):
    del each
    loss = sums["sum_loss"] / max(sums["sum_tokens"], 1.0)
    return {
      "loss": loss,
      "perplexity": float(np.exp(min(loss, 50.0))),
      "token_accuracy": sums["sum_correct"] / max(sums["sum_tokens"], 1.0),
    }


def _at_least_f32(x: jax.Array) -> jax.Array:
  """Losses in float32 even under bfloat16 compute; float64 stays float64
  (the gradient instruments)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


class _PerExample:
  """Shared parts of the long-range objectives (``attention_jax.data.long_range``).

  The model maps ``batch["inputs"]`` to its outputs; ``per_example_loss``
  gives ``[B]`` losses; an example counts with its ``weight`` (0 for the
  all-zero rows that pad the last evaluation batch). ``baseline`` is the trivial
  predictor's loss, reported as ``baseline_loss``.
  """

  def per_example_loss(self, outputs, batch) -> jax.Array:
    raise NotImplementedError

  def correct(self, outputs, batch) -> dict[str, jax.Array]:
    return {}

  def train_loss(self, model, batch, rng, config):
    outputs = model(batch["inputs"], dropout_rng=rng)
    w = batch["weight"]
    n = jnp.maximum(w.sum(), 1.0)
    loss = (self.per_example_loss(outputs, batch) * w).sum() / n
    extra = {k: (v * w).sum() / n for k, v in self.correct(outputs, batch).items()}
    return loss, extra

  def eval_batch(self, model, batch):
    outputs = model(batch["inputs"])
    w = batch["weight"]
    out = {
      "sum_loss": (self.per_example_loss(outputs, batch) * w).sum(),
      "sum_baseline": (batch["baseline"] * w).sum(),
      "sum_examples": w.sum(),
    }
    for k, v in self.correct(outputs, batch).items():
      out[f"sum_{k}"] = (v * w).sum()
    return out

  def finalize(self, sums, each):
    n = max(sums["sum_examples"], 1.0)
    out = {"loss": sums["sum_loss"] / n, "baseline_loss": sums["sum_baseline"] / n}
    for k, v in sums.items():
      if k not in ("sum_loss", "sum_baseline", "sum_examples"):
        out[k[len("sum_") :]] = v / n
    return out


class Regression(_PerExample):
  """Squared error of a scalar prediction ``[B]``; ``loss`` = ``mse``."""

  rankable = ("mse", "loss")
  best_metric = "mse"

  def per_example_loss(self, outputs, batch):
    outputs = _at_least_f32(outputs)
    return (outputs - batch["target"].astype(outputs.dtype)) ** 2

  def finalize(self, sums, each):
    out = super().finalize(sums, each)
    out["mse"] = out["loss"]
    return out


class Classification(_PerExample):
  """One label per sequence: cross-entropy of logits ``[B, V]`` against
  ``labels [B]``; ``sequence_accuracy`` = fraction of sequences classified
  right (the exact match of a one-label output)."""

  rankable = ("sequence_accuracy", "loss")
  best_metric = "sequence_accuracy"

  def per_example_loss(self, outputs, batch):
    return optax.softmax_cross_entropy_with_integer_labels(_at_least_f32(outputs), batch["labels"])

  def correct(self, outputs, batch):
    right = jnp.argmax(outputs, -1) == batch["labels"]
    return {"sequence_accuracy": right.astype(jnp.float32)}


class SequenceLabelling(_PerExample):
  """A label per step: cross-entropy of logits ``[B, L, V]`` against
  ``labels [B, L]``, averaged over the L steps (copy memory's convention, so
  that the memoryless baseline is 10 · ln 8 / (T + 20)).

  ``token_accuracy`` and ``sequence_accuracy`` count the steps whose label is
  not the most frequent one of the task (copy memory: the 10 recalled symbols,
  not the blanks; ``batch["scored"]`` marks them when given).
  """

  rankable = ("loss", "token_accuracy", "sequence_accuracy")
  best_metric = "loss"  # the cross-entropy copy memory is judged by

  def per_example_loss(self, outputs, batch):
    ce = optax.softmax_cross_entropy_with_integer_labels(
      _at_least_f32(outputs), batch["labels"]
    )  # (B, L)
    return ce.mean(axis=-1)

  def correct(self, outputs, batch):
    scored = batch["scored"] if "scored" in batch else jnp.ones_like(batch["labels"], bool)
    right = (jnp.argmax(outputs, -1) == batch["labels"]) | ~scored
    n = jnp.maximum(scored.sum(-1), 1)
    hits = (right & scored).sum(-1)
    return {"token_accuracy": hits / n, "sequence_accuracy": jnp.all(right, -1).astype(jnp.float32)}


# Every objective provides
# * train_loss(model, batch, rng, config) -> (loss, measurements): the scalar loss to
#   differentiate and extra scalars to log (e.g. token accuracy);
# * eval_batch(model, batch) -> dict, jit-compatible: `sum_*` keys are summed over batches,
#   `each_*` keys are per example [B] and concatenated (padding rows removed); padding rows
#   of an evaluation batch are all-PAD and must count nothing in `sum_*` entries;
# * finalize(sums, each) -> metrics, host-side: the numbers reported;
# * rankable: those of its metrics that can rank checkpoints, and best_metric, the default
#   one (checkpoint.best_metric).
OBJECTIVES = {
  "seq2seq": Seq2Seq(),
  "regression": Regression(),
  "classification": Classification(),
  "sequence_labelling": SequenceLabelling(),
  "lm": LanguageModel(),
}


def get(name: str, task=None, config=None, split: str = "eval"):
  """The objective ``name``, bound to ``task``, ``config`` and the evaluation
  ``split`` if it can be."""
  objective = OBJECTIVES[name]
  if task is not None and hasattr(objective, "bind"):
    objective = objective.bind(task, config, split)
  return objective


def best_metric(config, objective_name: str) -> tuple[str, str]:
  """``(metric, mode)`` that ranks checkpoints (``--step best``):
  ``checkpoint.best_metric`` or the objective's default, and
  ``checkpoint.best_mode`` or the metric's own direction. ConfigError naming
  a metric this objective does not report, or a mode other than max/min."""
  objective = OBJECTIVES[objective_name]
  c = config.checkpoint
  metric = c.best_metric or objective.best_metric
  rankable = objective.rankable
  if objective_name == "seq2seq" and not config.eval.chrf:
    rankable = tuple(m for m in rankable if m != "chrf")
  if metric not in rankable:
    why = " (set eval.chrf=True to report it)" if metric == "chrf" else ""
    raise ConfigError(
      f"config key 'checkpoint.best_metric' has value {metric!r}, which the "
      f"{objective_name} objective of data.task {config.data.task!r} does not report{why}; "
      "allowed: " + ", ".join(repr(m) for m in rankable)
    )
  if c.best_mode and c.best_mode not in BEST_MODES:
    raise ConfigError(
      f"config key 'checkpoint.best_mode' has value {c.best_mode!r}; allowed: 'max', 'min' "
      f"or '' ({metric}: {METRIC_MODES[metric]!r})"
    )
  return metric, c.best_mode or METRIC_MODES[metric]
