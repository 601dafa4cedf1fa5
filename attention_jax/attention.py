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
from absl import logging
from flax import nnx

from attention_jax import positions as positions_lib


def masked_softmax(scores: jax.Array, mask: jax.Array | None) -> jax.Array:
  """softmax over the last axis where ``mask``; rows with no True give 0.

  Computed and returned in at least float32 (bfloat16 scores are upcast;
  float64 stays float64): callers cast the weights to the values' dtype
  before the weighted sum.
  """
  scores = scores.astype(jnp.promote_types(scores.dtype, jnp.float32))
  if mask is None:
    return jax.nn.softmax(scores, axis=-1)
  big_neg = jnp.finfo(scores.dtype).min
  weights = jax.nn.softmax(jnp.where(mask, scores, big_neg), axis=-1)
  return jnp.where(mask, weights, 0.0)


# ---------------------------------------------------------------------------
# (1) Additive (Bahdanau et al. 2014) and Luong et al. 2015 attention


def attend(
  scores: jax.Array, values: jax.Array, mask: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
  """α = softmax(scores) over real positions; context c = Σ_j α_j h_j.

  scores [B, S], values [B, S, K], mask [B, S] (True = real source position).
  Returns ``(context [B, K], weights [B, S])``, the weights in at least
  float32 (the softmax's dtype); weights are exactly 0 where
  ``mask`` is False and sum to 1 over the rest.
  """
  weights = masked_softmax(scores, mask)  # (B, S), ≥ float32
  context = jnp.einsum("bs,bsk->bk", weights.astype(values.dtype), values)
  return context, weights  # (B, K), (B, S)


def additive_scores(query_proj: jax.Array, keys: jax.Array, v: jax.Array) -> jax.Array:
  """e_j = vᵀ tanh(q + k_j): query_proj [B, A] (= W s), keys [B, S, A]
  (= U h_j + b), v [A] -> scores [B, S]."""
  return jnp.tanh(query_proj[:, None, :] + keys) @ v  # (B, S)


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

  def __init__(self, query_features: int, key_features: int, attention_dim: int, *, rngs: nnx.Rngs):
    self.query_proj = nnx.Linear(query_features, attention_dim, use_bias=False, rngs=rngs)  # W
    self.key_proj = nnx.Linear(key_features, attention_dim, rngs=rngs)  # U, b
    self.v = nnx.Param(
      nnx.initializers.lecun_normal()(rngs.params(), (attention_dim, 1))[:, 0]
    )  # (A,)

  def keys(self, annotations: jax.Array) -> jax.Array:
    """U h_j + b for every source position: [B, S, K] -> [B, S, A]."""
    return self.key_proj(annotations)

  def __call__(
    self, query: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array]:
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

  def __init__(
    self,
    query_features: int,
    key_features: int,
    score: str = "general",
    attention_dim: int = 0,
    *,
    rngs: nnx.Rngs,
  ):
    if score not in LUONG_SCORES:
      raise ValueError(f"Luong score {score!r}; allowed: {LUONG_SCORES}")
    self.score = score
    if score == "dot" and query_features != key_features:
      raise ValueError(
        f"dot score needs query_features == key_features, got {query_features} and {key_features}"
      )
    general, concat = score == "general", score == "concat"
    A = attention_dim or query_features
    self.W_a = (
      nnx.Linear(key_features, query_features, use_bias=False, rngs=rngs) if general else None
    )
    # concat: W_a [h_t; h̄_s] = W_q h_t + W_k h̄_s, the two halves of W_a.
    self.query_proj = nnx.Linear(query_features, A, use_bias=False, rngs=rngs) if concat else None
    self.key_proj = nnx.Linear(key_features, A, use_bias=False, rngs=rngs) if concat else None
    self.v = (
      nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (A, 1))[:, 0]) if concat else None
    )  # (A,)

  def keys(self, memory: jax.Array) -> jax.Array:
    """The source-only part of the score: [B, S, K] -> [B, S, Q or A]."""
    if self.score == "general":
      return self.W_a(memory)  # W_a h̄_s
    if self.score == "concat":
      return self.key_proj(memory)  # W_k h̄_s
    return memory

  def scores(self, query: jax.Array, keys: jax.Array) -> jax.Array:
    """query [B, Q], keys [B, S, ·] -> scores [B, S]."""
    if self.score == "concat":
      return additive_scores(self.query_proj(query), keys, self.v[...])
    return jnp.einsum("bq,bsq->bs", query, keys)

  def __call__(
    self, query: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array | None = None
  ) -> tuple[jax.Array, jax.Array]:
    """query [B, Q] (h_t), keys from :meth:`keys`, values [B, S, K] (h̄_s),
    mask [B, S] -> (context [B, K], weights [B, S])."""
    return attend(self.scores(query, keys), values, mask)


# ---------------------------------------------------------------------------
# (2) Scaled dot-product and multi-head attention (Vaswani et al. 2017)
#
# Layouts: the public ``scaled_dot_product_attention`` takes [B, T, N, h]
# (batch, time, heads, head dim) like ``jax.nn.dot_product_attention``;
# inside ``MultiHeadAttention`` the einsum path works heads-major [B, N, T, h],
# which measured faster on CPU (docs/performance.md, attention benchmark). Masks are
# boolean, True = may attend, broadcastable to [B, N, T, S].

IMPLEMENTATIONS = ("auto", "einsum", "xla", "cudnn")
_logged_paths: set = set()
#: The path the most recent trace took: ``{"requested", "used", "reason"}``.
last_path: dict = {}


def _note_path(requested: str, used: str, reason: str) -> str:
  last_path.update(requested=requested, used=used, reason=reason)
  if (requested, used, reason) not in _logged_paths:
    _logged_paths.add((requested, used, reason))
    logging.info(
      "attention implementation %r -> %r%s", requested, used, f" ({reason})" if reason else ""
    )
  return used


def choose_implementation(
  implementation: str, dtype, head_dim: int, *, needs_weights: bool = False
) -> str:
  """Which path runs: ``einsum``, ``xla`` or ``cudnn`` (logged once per choice).

  ``cudnn`` (fused flash attention) needs a GPU, float16/bfloat16, a head
  dimension that is a multiple of 8 and ≤ 128, and no attention weights or
  dropout on them; otherwise it falls back to ``xla``. ``auto`` takes cudnn
  where it can and the einsum reference elsewhere (fastest on CPU).
  Weights or dropout on weights always need the einsum path.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(
      f"attention implementation {implementation!r}; allowed: " + ", ".join(IMPLEMENTATIONS)
    )
  if implementation == "einsum":
    return _note_path(implementation, "einsum", "")
  if needs_weights:
    return _note_path(implementation, "einsum", "attention weights or dropout on them requested")
  cudnn_ok, why = True, ""
  if jax.default_backend() != "gpu":
    cudnn_ok, why = False, f"backend is {jax.default_backend()}"
  elif jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    cudnn_ok, why = False, f"dtype {jnp.dtype(dtype).name} (cudnn needs bf16/fp16)"
  elif head_dim % 8 or head_dim > 128:
    cudnn_ok, why = False, f"head dim {head_dim} (cudnn needs a multiple of 8, <= 128)"
  if implementation == "cudnn":
    return _note_path(
      implementation,
      "cudnn" if cudnn_ok else "xla",
      "" if cudnn_ok else f"cudnn unavailable: {why}",
    )
  if implementation == "auto":
    return _note_path(implementation, "cudnn" if cudnn_ok else "einsum", why)
  return _note_path(implementation, "xla", "")


def causal_mask(q_len: int, k_len: int, offset: jax.Array | int = 0) -> jax.Array:
  """[1, 1, T, S] True where key position s ≤ query position t + offset."""
  q_pos = jnp.arange(q_len)[:, None] + offset
  return (jnp.arange(k_len)[None, :] <= q_pos)[None, None]


def padding_mask(q_valid: jax.Array | None, k_valid: jax.Array) -> jax.Array:
  """[B, 1, T, S] (or [B, 1, 1, S]) from per-position validity [B, T], [B, S]."""
  m = k_valid[:, None, None, :]
  if q_valid is not None:
    m = m & q_valid[:, None, :, None]
  return m


def combine_masks(*masks: jax.Array | None) -> jax.Array | None:
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  out = masks[0]
  for m in masks[1:]:
    out = out & m
  return out


@jax.custom_vjp
def _attention_heads_major(q, k, v, mask, bias=None):
  """softmax(q kᵀ / √h + bias) v on [B, N, T, h] with a hand-written backward
  pass (``bias``: a constant added to the scores, e.g. ALiBi's; no gradient).

  Backward (as FlashAttention's, Dao et al. 2022, Alg. 2, without tiling), with
  P the weights and O the output:
      dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP − rowsum(dO ∘ O)),
      dQ = dS K / √h,   dK = dSᵀ Q / √h.
  ``rowsum(dO ∘ O)`` (a [T, h] product) replaces autodiff's ``rowsum(dP ∘ P)``
  ([T, S]); on CPU this backward measured faster than autodiff of the forward
  (docs/performance.md, attention benchmark).
  """
  return _attention_heads_major_fwd(q, k, v, mask, bias)[0]


def _add_bias(scores: jax.Array, bias: jax.Array | None) -> jax.Array:
  """float32 scores (+ a bias broadcastable to them)."""
  scores = scores.astype(jnp.float32)
  return scores if bias is None else scores + bias.astype(jnp.float32)


def _softmax_scores(scores: jax.Array, mask: jax.Array | None, bias=None) -> jax.Array:
  """:func:`masked_softmax` of ``scores + bias`` over [B, N, T, S] scores in
  one pass: the mask enters as an additive [B|1, N|1, T|1, S] term (0 or
  ``finfo.min``, which absorbs any score: exp underflows to exactly 0, as
  where the mask writes zeros) and fully masked rows through their
  normaliser (times 0), both small arrays; no select over the scores, which
  XLA's CPU backend would write out in full. The same values as
  :func:`masked_softmax` (≥ float32)."""
  scores = _add_bias(scores, bias)
  if mask is None:
    return jax.nn.softmax(scores, axis=-1)
  big_neg = jnp.finfo(scores.dtype).min
  s = scores + jnp.where(mask, 0.0, big_neg).astype(scores.dtype)
  e = jnp.exp(s - jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True)))
  any_key = jnp.any(mask, axis=-1, keepdims=True).astype(scores.dtype)  # 0: fully masked row
  return e * (any_key / jnp.sum(e, axis=-1, keepdims=True))


def _attention_heads_major_fwd(q, k, v, mask, bias=None):
  scale = jnp.asarray(1.0 / (q.shape[-1] ** 0.5), q.dtype)
  qs = q * scale
  scores = jnp.einsum("bnth,bnsh->bnts", qs, k)  # (B, N, T, S)
  p = _softmax_scores(scores, mask, bias).astype(v.dtype)
  o = jnp.einsum("bnts,bnsh->bnth", p, v)  # (B, N, T, h)
  return o, (qs, k, v, p, o)


def _attention_heads_major_bwd(res, do):
  """The scale 1/√h goes on dQ [T, h] and (through the scaled Q) dK, not on
  dS [T, S]: no pass over the scores for it. dS is 0 wherever P is (masked
  positions), so the mask is not needed here.

  dV = Pᵀ dO and dK = dSᵀ Q contract the [T, S] operand over its first axis,
  a form XLA's CPU backend sends to a generic dot rather than its fast
  matmul library; computed instead as dVᵀ = dOᵀ P and dKᵀ = Qᵀ dS from copies
  of the small [T, h] operands transposed (the barrier keeps XLA from
  folding the transposes back into the products).
  """
  qs, k, v, p, o = res
  scale = jnp.asarray(1.0 / (qs.shape[-1] ** 0.5), qs.dtype)

  def transposed(a):  # (B, N, T, h) -> a copy (B, N, h, T)
    return jax.lax.optimization_barrier(jnp.swapaxes(a, 2, 3))

  dv = jnp.swapaxes(jnp.einsum("bnht,bnts->bnhs", transposed(do), p), 2, 3)
  dp = jnp.einsum("bnth,bnsh->bnts", do, v)
  delta = jnp.sum(
    do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1, keepdims=True
  )  # (B, N, T, 1)
  ds = (p.astype(jnp.float32) * (dp.astype(jnp.float32) - delta)).astype(qs.dtype)
  dq = jnp.einsum("bnts,bnsh->bnth", ds, k) * scale
  dk = jnp.swapaxes(jnp.einsum("bnht,bnts->bnhs", transposed(qs), ds), 2, 3)
  return dq, dk, dv, None, None


_attention_heads_major.defvjp(_attention_heads_major_fwd, _attention_heads_major_bwd)


def _einsum_core(
  q,
  k,
  v,
  mask,
  *,
  heads_major: bool,
  dropout_rate: float = 0.0,
  dropout_rng=None,
  need_weights: bool = True,
  bias=None,
):
  """softmax(q kᵀ / √h + bias) v, the reference. Returns (out, weights
  [B, N, T, S]). ``bias`` (broadcastable to [B, N, T, S]) is a constant.

  Heads-major without dropout takes the output from the hand-written
  backward of :func:`_attention_heads_major` (same values); the weights, if
  asked for, are computed beside it (differentiable; where the caller drops
  them, as a train step drops a Transformer's reported attention, XLA removes
  them and their backward, which the output's never depended on).
  """
  use_dropout = dropout_rng is not None and dropout_rate > 0.0
  scale = 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], jnp.float32)).astype(q.dtype)

  def weights_of(softmax):
    if heads_major:  # q (B, N, T, h)
      scores = jnp.einsum("bnth,bnsh->bnts", q * scale, k)
    else:  # q (B, T, N, h)
      scores = jnp.einsum("btnh,bsnh->bnts", q * scale, k)
    return softmax(scores).astype(v.dtype)

  if heads_major and not use_dropout:
    o = _attention_heads_major(q, k, v, mask, bias)
    return o, (weights_of(lambda s: _softmax_scores(s, mask, bias)) if need_weights else None)
  weights = weights_of(lambda s: masked_softmax(_add_bias(s, bias), mask))
  dropped = weights
  if dropout_rng is not None and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    dropped = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0).astype(v.dtype)
  if heads_major:
    out = jnp.einsum("bnts,bnsh->bnth", dropped, v)  # (B, N, T, h)
  else:
    out = jnp.einsum("bnts,bsnh->btnh", dropped, v)  # (B, T, N, h)
  return out, weights


def _library_core(q, k, v, mask, is_causal: bool, implementation: str, bias=None):
  """``jax.nn.dot_product_attention`` on [B, T, N, h] (``bias`` broadcastable
  to [B, N, T, S], in q's dtype); fully masked rows -> 0."""
  if bias is not None:
    bias = jnp.broadcast_to(bias, (bias.shape[0], q.shape[2], q.shape[1], k.shape[1])).astype(
      q.dtype
    )
  if implementation == "cudnn":
    try:
      out = jax.nn.dot_product_attention(
        q, k, v, bias=bias, mask=mask, is_causal=is_causal, implementation="cudnn"
      )
    except Exception as e:  # noqa: BLE001 - shapes/masks cudnn rejects at trace time
      _note_path("cudnn", "xla", f"cudnn rejected the call: {type(e).__name__}")
      implementation = "xla"
  if implementation == "xla":
    out = jax.nn.dot_product_attention(
      q, k, v, bias=bias, mask=mask, is_causal=is_causal, implementation="xla"
    )
  if mask is not None:  # the library gives uniform weights there; we give 0
    any_key = jnp.any(mask, axis=-1)  # (B|1, N|1, T|1)
    any_key = jnp.moveaxis(any_key, 1, 2)[..., None]  # (B|1, T|1, N|1, 1)
    out = jnp.where(any_key, out, 0.0).astype(out.dtype)
  return out


def dot_product_attention_weights(
  query: jax.Array, key: jax.Array, mask: jax.Array | None = None, *, is_causal: bool = False
) -> jax.Array:
  """α = softmax(q kᵀ / √h) over keys: [B, T, N, h], [B, S, N, h] -> [B, N, T, S]."""
  if is_causal:
    mask = combine_masks(mask, causal_mask(query.shape[1], key.shape[1]))
  scale = 1.0 / jnp.sqrt(jnp.asarray(query.shape[-1], jnp.float32))
  scores = jnp.einsum("btnh,bsnh->bnts", query, key).astype(jnp.float32) * scale
  return masked_softmax(scores, mask)


def scaled_dot_product_attention(
  query: jax.Array,
  key: jax.Array,
  value: jax.Array,
  mask: jax.Array | None = None,
  *,
  is_causal: bool = False,
  implementation: str = "einsum",
  dropout_rate: float = 0.0,
  dropout_rng: jax.Array | None = None,
) -> jax.Array:
  """Scaled dot-product attention (Vaswani et al. 2017, eq. 1):

      Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

  query [B, T, N, h], key/value [B, S, N, h] -> [B, T, N, h]. ``mask``
  (bool, True = attend) broadcasts to [B, N, T, S]; ``is_causal`` adds
  s ≤ t. A query row with no allowed key outputs 0 (never NaN).
  ``implementation``: see :func:`choose_implementation`.
  """
  needs_weights = dropout_rng is not None and dropout_rate > 0.0
  used = choose_implementation(
    implementation, query.dtype, query.shape[-1], needs_weights=needs_weights
  )
  if used == "einsum":
    if is_causal:
      mask = combine_masks(mask, causal_mask(query.shape[1], key.shape[1]))
    if needs_weights:
      out, _ = _einsum_core(
        query,
        key,
        value,
        mask,
        heads_major=False,
        dropout_rate=dropout_rate,
        dropout_rng=dropout_rng,
      )
      return out
    q, k, v = (jnp.swapaxes(a, 1, 2) for a in (query, key, value))  # (B, N, T, h)
    return jnp.swapaxes(_attention_heads_major(q, k, v, mask), 1, 2)
  return _library_core(query, key, value, mask, is_causal, used)


class MultiHeadAttention(nnx.Module):
  """Multi-head attention (Vaswani et al. 2017, Section 3.2.2):

      MultiHead(Q, K, V) = Concat(head_1, …, head_N) W^O,
      head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

  Self-attention when ``inputs_kv`` is None, cross-attention otherwise.
  Parameters are laid out as ``nnx.MultiHeadAttention``'s: ``query/key/value``
  kernels [D, N, h] with biases [N, h], ``out`` kernel [N, h, D_out].

  ``position`` puts a position term into self-attention
  (:mod:`attention_jax.positions`): ``"rope"`` rotates queries and keys,
  ``"alibi"`` adds −m_h·|i − j| to the scores; None (the default, and always
  for cross-attention) adds nothing. Positions are ``positions [B|1, T]``
  (default 0…T−1).

  Incremental decoding uses an explicit cache (a pytree, no hidden state):
  ``init_cache(B, L)`` -> ``{"key", "value": [B, N, L, h], "index": int32 []}``
  (with ALiBi also the keys' ``"positions" [B, L]``) and ``decode(x [B, t, D],
  cache)`` appends t positions and attends causally over everything cached so
  far. Keys are cached rotated (RoPE), so each is rotated once.
  """

  def __init__(
    self,
    in_features: int,
    num_heads: int,
    *,
    kv_features: int | None = None,
    qkv_features: int | None = None,
    out_features: int | None = None,
    dropout_rate: float = 0.0,
    use_bias: bool = True,
    implementation: str = "auto",
    position: str | None = None,
    rngs: nnx.Rngs,
  ):
    qkv = qkv_features or in_features
    if qkv % num_heads:
      raise ValueError(f"features {qkv} not divisible by num_heads {num_heads}")
    if position not in (None, *positions_lib.ATTENTION_SCHEMES):
      raise ValueError(
        f"attention position term {position!r}; allowed: None, "
        + ", ".join(positions_lib.ATTENTION_SCHEMES)
      )
    if position == "rope" and (qkv // num_heads) % 2:
      raise ValueError(f"rope needs an even head dimension, got {qkv // num_heads}")
    self.num_heads, self.head_dim = num_heads, qkv // num_heads
    self.position = position
    self.alibi_slopes = (
      tuple(positions_lib.alibi_slopes(num_heads)) if position == "alibi" else None
    )
    self.dropout_rate = dropout_rate
    self.implementation = implementation
    kv_features = kv_features or in_features
    out_features = out_features or in_features
    N, h = num_heads, self.head_dim
    self.query = nnx.LinearGeneral(in_features, (N, h), use_bias=use_bias, rngs=rngs)
    self.key = nnx.LinearGeneral(kv_features, (N, h), use_bias=use_bias, rngs=rngs)
    self.value = nnx.LinearGeneral(kv_features, (N, h), use_bias=use_bias, rngs=rngs)
    self.out = nnx.LinearGeneral((N, h), out_features, axis=(-2, -1), use_bias=use_bias, rngs=rngs)

  # Projections straight into the layout the core wants.
  def _project(self, layer, x, heads_major: bool):
    spec = "btd,dnh->bnth" if heads_major else "btd,dnh->btnh"
    y = jnp.einsum(spec, x, layer.kernel[...])
    if layer.bias is not None:
      b = layer.bias[...]
      y = y + (b[:, None, :] if heads_major else b)
    return y

  def _output(self, o, heads_major: bool):
    spec = "bnth,nhd->btd" if heads_major else "btnh,nhd->btd"
    y = jnp.einsum(spec, o, self.out.kernel[...])
    return y + self.out.bias[...] if self.out.bias is not None else y

  def project_kv(self, inputs_kv: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Keys and values [B, N, S, h] of a memory, computed once (cross-attention)."""
    return (self._project(self.key, inputs_kv, True), self._project(self.value, inputs_kv, True))

  def _bias(self, q_positions, k_positions) -> jax.Array | None:
    """ALiBi's score bias [B|1, N, T, S], or None."""
    if self.position != "alibi":
      return None
    return positions_lib.alibi_bias(self.alibi_slopes, q_positions, k_positions)

  def __call__(
    self,
    inputs_q: jax.Array,
    inputs_kv: jax.Array | None = None,
    mask: jax.Array | None = None,
    *,
    is_causal: bool = False,
    kv: tuple[jax.Array, jax.Array] | None = None,
    dropout_rng: jax.Array | None = None,
    return_weights: bool = False,
    positions: jax.Array | None = None,
  ):
    """inputs_q [B, T, D], inputs_kv [B, S, D_kv] (or precomputed ``kv``) ->
    (out [B, T, D_out], weights [B, N, T, S] or None). ``positions [B|1, T]``:
    of the queries and (self-attention) keys, for the position term."""
    needs = return_weights or (dropout_rng is not None and self.dropout_rate > 0)
    used = choose_implementation(
      self.implementation, inputs_q.dtype, self.head_dim, needs_weights=needs
    )
    heads_major = used == "einsum" or kv is not None
    q = self._project(self.query, inputs_q, heads_major)
    if kv is not None:
      k, v = kv
    else:
      src = inputs_q if inputs_kv is None else inputs_kv
      k = self._project(self.key, src, heads_major)
      v = self._project(self.value, src, heads_major)
    T, S = inputs_q.shape[1], k.shape[2 if heads_major else 1]
    bias = None
    if self.position is not None:
      if kv is not None or inputs_kv is not None:
        raise ValueError("a position term is for self-attention only")
      if positions is None:
        positions = jnp.arange(T)[None]
      if self.position == "rope":
        q = positions_lib.rope(q, positions, heads_major=heads_major)
        k = positions_lib.rope(k, positions, heads_major=heads_major)
      bias = self._bias(positions, positions)
    if used == "einsum":
      if is_causal:
        mask = combine_masks(mask, causal_mask(T, S))
      o, w = _einsum_core(
        q,
        k,
        v,
        mask,
        heads_major=True,
        dropout_rate=self.dropout_rate,
        dropout_rng=dropout_rng,
        need_weights=return_weights,
        bias=bias,
      )
      return self._output(o, True), w
    if heads_major:  # precomputed kv arrive heads-major
      q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
    o = _library_core(q, k, v, mask, is_causal, used, bias)
    return self._output(o, False), None

  def init_cache(self, batch_size: int, max_length: int, dtype=jnp.float32) -> dict:
    shape = (batch_size, self.num_heads, max_length, self.head_dim)
    cache = {
      "key": jnp.zeros(shape, dtype),
      "value": jnp.zeros(shape, dtype),
      "index": jnp.zeros((), jnp.int32),
    }
    if self.position == "alibi":  # the keys' positions, for the bias
      cache["positions"] = jnp.zeros((batch_size, max_length), jnp.int32)
    return cache

  def decode(
    self,
    inputs: jax.Array,
    cache: dict,
    mask: jax.Array | None = None,
    *,
    return_weights: bool = False,
    positions: jax.Array | None = None,
  ):
    """Causal self-attention of t new positions [B, t, D] given ``cache``.

    Writes their keys/values at ``cache["index"]``, attends each new position
    i (absolute index+i) to cached positions ≤ index+i. ``mask`` [B, 1|t, L]
    may also drop cached positions (e.g. padding). ``positions [B|1, t]``:
    the new tokens' positions for the position term (default: their slots,
    index…index+t−1). Returns (out, cache, weights).
    """
    t = inputs.shape[1]
    B, _, L, _ = cache["key"].shape
    idx = cache["index"]
    if positions is None:
      positions = (idx + jnp.arange(t))[None]
    q = self._project(self.query, inputs, True)  # (B, N, t, h)
    k = self._project(self.key, inputs, True)
    v = self._project(self.value, inputs, True)
    if self.position == "rope":
      q = positions_lib.rope(q, positions, heads_major=True)
      k = positions_lib.rope(k, positions, heads_major=True)
    keys = jax.lax.dynamic_update_slice(cache["key"], k.astype(cache["key"].dtype), (0, 0, idx, 0))
    values = jax.lax.dynamic_update_slice(
      cache["value"], v.astype(cache["value"].dtype), (0, 0, idx, 0)
    )
    new_cache = {"key": keys, "value": values, "index": idx + t}
    bias = None
    if self.position == "alibi":
      new_pos = jnp.broadcast_to(positions, (B, t)).astype(jnp.int32)
      new_cache["positions"] = jax.lax.dynamic_update_slice(cache["positions"], new_pos, (0, idx))
      bias = self._bias(positions, new_cache["positions"])
    full_mask = causal_mask(t, L, offset=idx)  # (1, 1, t, L)
    if mask is not None:
      full_mask = full_mask & mask[:, None]
    o, w = _einsum_core(
      q, keys, values, full_mask, heads_major=True, need_weights=return_weights, bias=bias
    )
    return self._output(o, True), new_cache, w


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
  scores = x @ jnp.swapaxes(x, -1, -2)  # (…, T, T)
  weights = jax.nn.softmax(scores, axis=-1)
  return weights @ x, weights


def self_attention_qkv(
  x: jax.Array, w_query: jax.Array, w_key: jax.Array, w_value: jax.Array, *, causal: bool = False
) -> tuple[jax.Array, jax.Array]:
  """Scaled dot-product self-attention with trainable weights (§3.4), and its
  causal form (§3.5: the upper triangle is masked before the softmax):

      Q = x W_q,  K = x W_k,  V = x W_v;   α = softmax(Q Kᵀ / √d_k);   Z = α V

  x [..., T, D], w_* [D, d] -> (context [..., T, d_v], weights [..., T, T]).
  """
  q, k, v = x @ w_query, x @ w_key, x @ w_value  # (…, T, d)
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


def multi_head_self_attention(
  x: jax.Array,
  w_query: jax.Array,
  w_key: jax.Array,
  w_value: jax.Array,
  w_out: jax.Array | None = None,
  *,
  num_heads: int,
  causal: bool = True,
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

  def split(w):  # (D, d) -> (n, D, dh)
    return jnp.moveaxis(w.reshape(w.shape[0], num_heads, dh), 1, 0)

  xs = x[..., None, :, :]  # (…, 1, T, D)
  context, weights = self_attention_qkv(
    xs, split(w_query), split(w_key), split(w_value), causal=causal
  )
  context = jnp.moveaxis(context, -3, -2)  # (…, T, n, dh)
  context = context.reshape(*context.shape[:-2], d)  # (…, T, d)
  if w_out is not None:
    context = context @ w_out
  return context, weights
