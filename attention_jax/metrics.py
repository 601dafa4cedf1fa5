"""Masked sequence losses and accuracies.

Targets are right-padded with PAD (0); a position counts when ``target != PAD``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from attention_jax.data.vocab import PAD


def cross_entropy(logits: jax.Array, targets: jax.Array,
                  label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """Summed token cross-entropy and the token count.

  logits [B, T, V], targets [B, T]. With label smoothing ε the target
  distribution is (1 − ε) one-hot + ε / V (Szegedy et al. 2016).
  """
  mask = (targets != PAD).astype(jnp.float32)
  V = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  if label_smoothing > 0:
    onehot = jax.nn.one_hot(targets, V)
    soft = onehot * (1.0 - label_smoothing) + label_smoothing / V
    losses = optax.softmax_cross_entropy(logits, soft)
  else:
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return (losses * mask).sum(), mask.sum()


def token_correct(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Number of non-PAD target positions predicted exactly. [B, T] -> scalar."""
  mask = targets != PAD
  return ((predictions == targets) & mask).sum()


def sequence_correct(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-sequence exact match over the non-PAD target positions. -> [B] bool.

  ``predictions`` may be longer or shorter than ``targets``; it is cut or
  padded with PAD (which never matches a real target token).
  """
  T = targets.shape[1]
  if predictions.shape[1] < T:
    predictions = jnp.pad(predictions, ((0, 0), (0, T - predictions.shape[1])))
  predictions = predictions[:, :T]
  mask = targets != PAD
  return jnp.all((predictions == targets) | ~mask, axis=1)
