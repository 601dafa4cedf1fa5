"""What a task trains and measures: its loss and its evaluation metrics.

A task names its objective (``task.objective``); the training loop is the
same for all of them. An objective provides

* ``train_loss(model, batch, rng, config) -> (loss, measurements)`` — the
  scalar loss to differentiate and extra scalars to log (e.g. token accuracy);
* ``eval_batch(model, batch) -> dict`` — jit-compatible; keys starting with
  ``sum_`` are summed over batches, keys starting with ``each_`` are per
  example ``[B]`` and concatenated (padding rows removed);
* ``finalize(sums, each) -> metrics`` — host-side, the numbers reported.

Padding rows in an evaluation batch are all-PAD and must count nothing in
``sum_`` entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attention_jax import decoding
from attention_jax import metrics as metrics_lib


class Seq2Seq:
  """Cross-entropy with teacher forcing; greedy decoding for exact match."""

  def train_loss(self, model, batch, rng, config):
    logits, _ = model(batch["src"], batch["tgt_in"], dropout_rng=rng)
    loss_sum, n = metrics_lib.cross_entropy(logits, batch["tgt_out"],
                                            config.train.label_smoothing)
    correct = metrics_lib.token_correct(jnp.argmax(logits, -1), batch["tgt_out"])
    n = jnp.maximum(n, 1.0)
    return loss_sum / n, {"token_accuracy": correct / n}

  def eval_batch(self, model, batch):
    logits, _ = model(batch["src"], batch["tgt_in"])
    loss_sum, n = metrics_lib.cross_entropy(logits, batch["tgt_out"])
    correct = metrics_lib.token_correct(jnp.argmax(logits, -1), batch["tgt_out"])
    tokens, _ = decoding.greedy_decode(model, batch["src"], batch["tgt_out"].shape[1])
    exact = metrics_lib.sequence_correct(tokens, batch["tgt_out"])
    return {"sum_loss": loss_sum, "sum_tokens": n, "sum_correct": correct,
            "each_exact": exact}

  def finalize(self, sums, each):
    loss = sums["sum_loss"] / max(sums["sum_tokens"], 1.0)
    return {
        "loss": loss,
        "perplexity": float(np.exp(min(loss, 50.0))),
        "token_accuracy": sums["sum_correct"] / max(sums["sum_tokens"], 1.0),
        "sequence_accuracy": float(each["each_exact"].mean()),
    }


class LanguageModel:
  """Next-token cross-entropy, −Σ_t log p(x_{t+1} | x_≤t), for decoder-only models.

  Batches: ``inputs [B, T]`` and ``targets [B, T]`` (inputs shifted by one);
  ``model(inputs, dropout_rng) -> logits [B, T, V]``. Reports ``loss`` (nats
  per token), ``perplexity = exp(loss)`` and ``token_accuracy``.
  """

  def train_loss(self, model, batch, rng, config):
    logits = model(batch["inputs"], dropout_rng=rng)
    loss_sum, n = metrics_lib.cross_entropy(logits, batch["targets"],
                                            config.train.label_smoothing)
    correct = metrics_lib.token_correct(jnp.argmax(logits, -1), batch["targets"])
    n = jnp.maximum(n, 1.0)
    return loss_sum / n, {"token_accuracy": correct / n}

  def eval_batch(self, model, batch):
    logits = model(batch["inputs"])
    loss_sum, n = metrics_lib.cross_entropy(logits, batch["targets"])
    correct = metrics_lib.token_correct(jnp.argmax(logits, -1), batch["targets"])
    return {"sum_loss": loss_sum, "sum_tokens": n, "sum_correct": correct}

  def finalize(self, sums, each):
    del each
    loss = sums["sum_loss"] / max(sums["sum_tokens"], 1.0)
    return {
        "loss": loss,
        "perplexity": float(np.exp(min(loss, 50.0))),
        "token_accuracy": sums["sum_correct"] / max(sums["sum_tokens"], 1.0),
    }


OBJECTIVES = {
    "seq2seq": Seq2Seq(),
    "lm": LanguageModel(),
}


def get(name: str):
  return OBJECTIVES[name]
