"""Attention mechanisms, each with its paper's equation.

Sections: (1) additive and Luong attention for RNN encoder–decoders;
(2) scaled dot-product and multi-head attention (Vaswani et al. 2017);
(3) the teaching functions of Raschka, "Build a Large Language Model (from
Scratch)", ch. 3.

Masks are boolean, True = may attend. A fully masked row gives zero weights,
never NaN (scores are filled with ``finfo(dtype).min``, not ``-inf``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def masked_softmax(scores: jax.Array, mask: jax.Array | None) -> jax.Array:
  """softmax over the last axis where ``mask``; rows with no True give 0."""
  if mask is None:
    return jax.nn.softmax(scores, axis=-1)
  big_neg = jnp.finfo(scores.dtype).min
  weights = jax.nn.softmax(jnp.where(mask, scores, big_neg), axis=-1)
  return jnp.where(mask, weights, 0.0)


# ---------------------------------------------------------------------------
# (1) Additive (Bahdanau et al. 2014) and Luong et al. 2015 attention


# ---------------------------------------------------------------------------
# (2) Scaled dot-product and multi-head attention (Vaswani et al. 2017)


# ---------------------------------------------------------------------------
# (3) Raschka, "Build a Large Language Model (from Scratch)", ch. 3
