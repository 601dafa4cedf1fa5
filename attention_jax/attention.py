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


def attend(scores: jax.Array, values: jax.Array, mask: jax.Array | None
           ) -> tuple[jax.Array, jax.Array]:
  """α = softmax(scores) over real positions; context c = Σ_j α_j h_j.

  scores [B, S], values [B, S, K], mask [B, S] (True = real source position).
  Returns ``(context [B, K], weights [B, S])``; weights are exactly 0 where
  ``mask`` is False and sum to 1 over the rest.
  """
  weights = masked_softmax(scores, mask)                      # (B, S)
  context = jnp.einsum("bs,bsk->bk", weights, values)         # (B, K)
  return context, weights


def additive_scores(query_proj: jax.Array, keys: jax.Array,
                    v: jax.Array) -> jax.Array:
  """e_j = vᵀ tanh(q + k_j): query_proj [B, A] (= W s), keys [B, S, A]
  (= U h_j + b), v [A] -> scores [B, S]."""
  return jnp.tanh(query_proj[:, None, :] + keys) @ v           # (B, S)


class AdditiveAttention(nnx.Module):
  """Additive attention of Bahdanau, Cho & Bengio 2014 ("RNNsearch"), eq. 5–6:

      e_ij = vᵀ tanh(W s_{i−1} + U h_j)          alignment model a(s_{i−1}, h_j)
      α_ij = exp(e_ij) / Σ_k exp(e_ik)
      c_i  = Σ_j α_ij h_j

  ``U h_j`` does not depend on the decoder step i, so it is computed once per
  source by :meth:`keys` ("can be pre-computed", Appendix A.1.2) and passed to
  every decoder step; only ``W s_{i−1}`` is computed inside the decoder's scan.
  U carries the bias b. v is initialised like a Linear layer (the paper uses
  zeros, which starts from uniform weights; both train).
  """

  def __init__(self, query_features: int, key_features: int,
               attention_dim: int, *, rngs: nnx.Rngs):
    self.query_proj = nnx.Linear(query_features, attention_dim, use_bias=False,
                                 rngs=rngs)                  # W
    self.key_proj = nnx.Linear(key_features, attention_dim, rngs=rngs)  # U, b
    self.v = nnx.Param(nnx.initializers.lecun_normal()(
        rngs.params(), (attention_dim, 1))[:, 0])            # (A,)

  def keys(self, annotations: jax.Array) -> jax.Array:
    """U h_j + b for every source position: [B, S, K] -> [B, S, A]."""
    return self.key_proj(annotations)

  def __call__(self, query: jax.Array, keys: jax.Array, values: jax.Array,
               mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """query [B, Q] (s_{i−1}), keys [B, S, A] from :meth:`keys`, values
    [B, S, K] (h_j), mask [B, S] -> (context [B, K], weights [B, S])."""
    scores = additive_scores(self.query_proj(query), keys, self.v[...])
    return attend(scores, values, mask)


LUONG_SCORES = ("dot", "general", "concat")


class LuongAttention(nnx.Module):
  """Global attention of Luong, Pham & Manning 2015, eq. 7–8:

      score(h_t, h̄_s) = h_tᵀ h̄_s                    dot
                      = h_tᵀ W_a h̄_s                general
                      = v_aᵀ tanh(W_a [h_t; h̄_s])   concat
      a_t(s) = softmax_s score(h_t, h̄_s);    c_t = Σ_s a_t(s) h̄_s

  h_t is the decoder's *current* top state (Bahdanau uses the previous one).
  The parts that depend on h̄_s only (W_a h̄_s for general; the h̄_s half of
  W_a for concat) are computed once per source by :meth:`keys`. The attentional
  state h̃_t = tanh(W_c [c_t; h_t]) (eq. 5) and input feeding belong to the
  model (:class:`attention_jax.models.seq2seq.Luong`).
  """

  def __init__(self, query_features: int, key_features: int, score: str = "general",
               attention_dim: int = 0, *, rngs: nnx.Rngs):
    if score not in LUONG_SCORES:
      raise ValueError(f"Luong score {score!r}; allowed: {LUONG_SCORES}")
    self.score = score
    if score == "dot" and query_features != key_features:
      raise ValueError("dot score needs query_features == key_features, got "
                       f"{query_features} and {key_features}")
    general, concat = score == "general", score == "concat"
    A = attention_dim or query_features
    self.W_a = (nnx.Linear(key_features, query_features, use_bias=False, rngs=rngs)
                if general else None)
    # concat: W_a [h_t; h̄_s] = W_q h_t + W_k h̄_s, the two halves of W_a.
    self.query_proj = (nnx.Linear(query_features, A, use_bias=False, rngs=rngs)
                       if concat else None)
    self.key_proj = (nnx.Linear(key_features, A, use_bias=False, rngs=rngs)
                     if concat else None)
    self.v = (nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (A, 1))[:, 0])
              if concat else None)                           # (A,)

  def keys(self, memory: jax.Array) -> jax.Array:
    """The source-only part of the score: [B, S, K] -> [B, S, Q or A]."""
    if self.score == "general":
      return self.W_a(memory)                                 # W_a h̄_s
    if self.score == "concat":
      return self.key_proj(memory)                            # W_k h̄_s
    return memory

  def scores(self, query: jax.Array, keys: jax.Array) -> jax.Array:
    """query [B, Q], keys [B, S, ·] -> scores [B, S]."""
    if self.score == "concat":
      return additive_scores(self.query_proj(query), keys, self.v[...])
    return jnp.einsum("bq,bsq->bs", query, keys)

  def __call__(self, query: jax.Array, keys: jax.Array, values: jax.Array,
               mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """query [B, Q] (h_t), keys from :meth:`keys`, values [B, S, K] (h̄_s),
    mask [B, S] -> (context [B, K], weights [B, S])."""
    return attend(self.scores(query, keys), values, mask)



# ---------------------------------------------------------------------------
# (2) Scaled dot-product and multi-head attention (Vaswani et al. 2017)


# ---------------------------------------------------------------------------
# (3) Raschka, "Build a Large Language Model (from Scratch)", ch. 3
#
# Small functions on explicit weights, in the order of the chapter. Inputs
# x [T, D] (one sequence, as in the book) or [B, T, D].


def simple_self_attention(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Self-attention without trainable weights (Raschka §3.3):

      ω_ij = x_i · x_j;   α_ij = softmax_j ω_ij;   z_i = Σ_j α_ij x_j

  x [..., T, D] -> (context [..., T, D], weights [..., T, T]).
  """
  scores = x @ jnp.swapaxes(x, -1, -2)                        # (…, T, T)
  weights = jax.nn.softmax(scores, axis=-1)
  return weights @ x, weights


def self_attention_qkv(x: jax.Array, w_query: jax.Array, w_key: jax.Array,
                       w_value: jax.Array, *, causal: bool = False
                       ) -> tuple[jax.Array, jax.Array]:
  """Scaled dot-product self-attention with trainable weights (§3.4), and its
  causal form (§3.5: the upper triangle is masked before the softmax):

      Q = x W_q,  K = x W_k,  V = x W_v;   α = softmax(Q Kᵀ / √d_k);   Z = α V

  x [..., T, D], w_* [D, d] -> (context [..., T, d_v], weights [..., T, T]).
  """
  q, k, v = x @ w_query, x @ w_key, x @ w_value               # (…, T, d)
  scores = q @ jnp.swapaxes(k, -1, -2) / jnp.sqrt(k.shape[-1])  # (…, T, T)
  mask = None
  if causal:
    T = x.shape[-2]
    mask = jnp.tril(jnp.ones((T, T), bool))
  weights = masked_softmax(scores, mask)
  return weights @ v, weights


def causal_self_attention(x, w_query, w_key, w_value):
  """§3.5: :func:`self_attention_qkv` with a causal mask — position i attends
  to positions j ≤ i only."""
  return self_attention_qkv(x, w_query, w_key, w_value, causal=True)


def multi_head_self_attention(x: jax.Array, w_query: jax.Array, w_key: jax.Array,
                              w_value: jax.Array, w_out: jax.Array | None = None,
                              *, num_heads: int, causal: bool = True
                              ) -> tuple[jax.Array, jax.Array]:
  """Multi-head attention by splitting the projections into heads (§3.6.2):

      head_h = softmax(Q_h K_hᵀ / √d_h) V_h,   Z = [head_1; …; head_n] W_out

  where Q_h is columns h·d_h … (h+1)·d_h − 1 of Q = x W_q (d_h = d / n). It
  equals stacking ``num_heads`` single heads (§3.6.1's wrapper) whose weights
  are those column blocks, followed by the output projection ``w_out [d, d]``
  (omitted when None). x [..., T, D] -> (context [..., T, d],
  weights [..., n, T, T]).
  """
  d = w_query.shape[-1]
  if d % num_heads:
    raise ValueError(f"output dim {d} is not divisible by num_heads {num_heads}")
  dh = d // num_heads

  def split(w):                                               # (D, d) -> (n, D, dh)
    return jnp.moveaxis(w.reshape(w.shape[0], num_heads, dh), 1, 0)

  xs = x[..., None, :, :]                                     # (…, 1, T, D)
  context, weights = self_attention_qkv(
      xs, split(w_query), split(w_key), split(w_value), causal=causal)
  context = jnp.moveaxis(context, -3, -2)                     # (…, T, n, dh)
  context = context.reshape(*context.shape[:-2], d)           # (…, T, d)
  if w_out is not None:
    context = context @ w_out
  return context, weights
