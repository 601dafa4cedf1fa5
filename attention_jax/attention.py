"""Attention mechanisms, each with its paper's equation.

Sections: (1) additive and Luong attention for RNN encoder–decoders;
(2) scaled dot-product and multi-head attention (Vaswani et al. 2017);
(3) the teaching functions of Raschka, "Build a Large Language Model (from
Scratch)", ch. 3.

Masks are boolean, True = may attend. A fully masked row gives zero weights,
never NaN (scores are filled with ``finfo(dtype).min``, not ``-inf``).
"""

from __future__ import annotations

from absl import logging
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
#
# Layouts: the public ``scaled_dot_product_attention`` takes [B, T, N, h]
# (batch, time, heads, head dim) like ``jax.nn.dot_product_attention``;
# inside ``MultiHeadAttention`` the einsum path works heads-major [B, N, T, h],
# which measured faster on CPU (see README, attention benchmark). Masks are
# boolean, True = may attend, broadcastable to [B, N, T, S].

IMPLEMENTATIONS = ("auto", "einsum", "xla", "cudnn")
_logged_paths: set = set()
#: The path the most recent trace took: ``{"requested", "used", "reason"}``.
last_path: dict = {}


def _note_path(requested: str, used: str, reason: str) -> str:
  last_path.update(requested=requested, used=used, reason=reason)
  if (requested, used, reason) not in _logged_paths:
    _logged_paths.add((requested, used, reason))
    logging.info("attention implementation %r -> %r%s", requested, used,
                 f" ({reason})" if reason else "")
  return used


def resolve_implementation(implementation: str, dtype, head_dim: int, *,
                           needs_weights: bool = False) -> str:
  """Which path runs: ``einsum``, ``xla`` or ``cudnn`` (logged once per choice).

  ``cudnn`` (fused flash attention) needs a GPU, float16/bfloat16, a head
  dimension that is a multiple of 8 and ≤ 128, and no attention weights or
  dropout on them; otherwise it falls back to ``xla``. ``auto`` takes cudnn
  where it can and the einsum reference elsewhere (fastest on CPU).
  Weights or dropout on weights always need the einsum path.
  """
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation {implementation!r}; allowed: "
                     + ", ".join(IMPLEMENTATIONS))
  if implementation == "einsum":
    return _note_path(implementation, "einsum", "")
  if needs_weights:
    return _note_path(implementation, "einsum",
                      "attention weights or dropout on them requested")
  cudnn_ok, why = True, ""
  if jax.default_backend() != "gpu":
    cudnn_ok, why = False, f"backend is {jax.default_backend()}"
  elif jnp.dtype(dtype) not in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
    cudnn_ok, why = False, f"dtype {jnp.dtype(dtype).name} (cudnn needs bf16/fp16)"
  elif head_dim % 8 or head_dim > 128:
    cudnn_ok, why = False, f"head dim {head_dim} (cudnn needs a multiple of 8, <= 128)"
  if implementation == "cudnn":
    return _note_path(implementation, "cudnn" if cudnn_ok else "xla",
                      "" if cudnn_ok else f"cudnn unavailable: {why}")
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
def _attention_heads_major(q, k, v, mask):
  """softmax(q kᵀ / √h) v on [B, N, T, h] with a hand-written backward pass.

  Backward (as FlashAttention's, Dao et al. 2022, Alg. 2, without tiling), with
  P the weights and O the output:
      dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP − rowsum(dO ∘ O)),
      dQ = dS K / √h,   dK = dSᵀ Q / √h.
  ``rowsum(dO ∘ O)`` (a [T, h] product) replaces autodiff's ``rowsum(dP ∘ P)``
  ([T, S]); on CPU this backward measured faster than autodiff of the forward
  (README, attention benchmark).
  """
  return _attention_heads_major_fwd(q, k, v, mask)[0]


def _attention_heads_major_fwd(q, k, v, mask):
  scale = jnp.asarray(1.0 / (q.shape[-1] ** 0.5), q.dtype)
  scores = jnp.einsum("bnth,bnsh->bnts", q * scale, k)           # (B, N, T, S)
  p = masked_softmax(scores.astype(jnp.float32), mask).astype(v.dtype)
  o = jnp.einsum("bnts,bnsh->bnth", p, v)                         # (B, N, T, h)
  return o, (q, k, v, p, o, mask)


def _attention_heads_major_bwd(res, do):
  q, k, v, p, o, mask = res
  scale = jnp.asarray(1.0 / (q.shape[-1] ** 0.5), q.dtype)
  dv = jnp.einsum("bnts,bnth->bnsh", p, do)
  dp = jnp.einsum("bnth,bnsh->bnts", do, v)
  delta = jnp.sum(do.astype(jnp.float32) * o.astype(jnp.float32), axis=-1,
                  keepdims=True)                                  # (B, N, T, 1)
  ds = (p.astype(jnp.float32) * (dp.astype(jnp.float32) - delta)).astype(q.dtype)
  ds = ds * scale
  dq = jnp.einsum("bnts,bnsh->bnth", ds, k)
  dk = jnp.einsum("bnts,bnth->bnsh", ds, q)
  return dq, dk, dv, None


_attention_heads_major.defvjp(_attention_heads_major_fwd, _attention_heads_major_bwd)


def _einsum_core(q, k, v, mask, *, heads_major: bool, dropout_rate: float = 0.0,
                 dropout_rng=None, need_weights: bool = True):
  """softmax(q kᵀ / √h) v, the reference. Returns (out, weights [B, N, T, S]).

  Heads-major without dropout and without weights uses the hand-written
  backward of :func:`_attention_heads_major` (same values; weights None).
  """
  use_dropout = dropout_rng is not None and dropout_rate > 0.0
  if heads_major and not use_dropout and not need_weights:
    return _attention_heads_major(q, k, v, mask), None
  scale = 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], jnp.float32)).astype(q.dtype)
  if heads_major:                                      # q (B, N, T, h)
    scores = jnp.einsum("bnth,bnsh->bnts", q * scale, k)
  else:                                                # q (B, T, N, h)
    scores = jnp.einsum("btnh,bsnh->bnts", q * scale, k)
  weights = masked_softmax(scores.astype(jnp.float32), mask).astype(v.dtype)
  dropped = weights
  if dropout_rng is not None and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    dropped = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0).astype(v.dtype)
  if heads_major:
    out = jnp.einsum("bnts,bnsh->bnth", dropped, v)    # (B, N, T, h)
  else:
    out = jnp.einsum("bnts,bsnh->btnh", dropped, v)    # (B, T, N, h)
  return out, weights


def _library_core(q, k, v, mask, is_causal: bool, implementation: str):
  """``jax.nn.dot_product_attention`` on [B, T, N, h]; fully masked rows -> 0."""
  if implementation == "cudnn":
    try:
      out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal,
                                         implementation="cudnn")
    except Exception as e:  # noqa: BLE001 - shapes/masks cudnn rejects at trace time
      _note_path("cudnn", "xla", f"cudnn rejected the call: {type(e).__name__}")
      implementation = "xla"
  if implementation == "xla":
    out = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=is_causal,
                                       implementation="xla")
  if mask is not None:  # the library gives uniform weights there; we give 0
    any_key = jnp.any(mask, axis=-1)                   # (B|1, N|1, T|1)
    any_key = jnp.moveaxis(any_key, 1, 2)[..., None]   # (B|1, T|1, N|1, 1)
    out = jnp.where(any_key, out, 0.0).astype(out.dtype)
  return out


def dot_product_attention_weights(query: jax.Array, key: jax.Array,
                                  mask: jax.Array | None = None, *,
                                  is_causal: bool = False) -> jax.Array:
  """α = softmax(q kᵀ / √h) over keys: [B, T, N, h], [B, S, N, h] -> [B, N, T, S]."""
  if is_causal:
    mask = combine_masks(mask, causal_mask(query.shape[1], key.shape[1]))
  scale = 1.0 / jnp.sqrt(jnp.asarray(query.shape[-1], jnp.float32))
  scores = jnp.einsum("btnh,bsnh->bnts", query, key).astype(jnp.float32) * scale
  return masked_softmax(scores, mask)


def scaled_dot_product_attention(
    query: jax.Array, key: jax.Array, value: jax.Array,
    mask: jax.Array | None = None, *, is_causal: bool = False,
    implementation: str = "einsum", dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None) -> jax.Array:
  """Scaled dot-product attention (Vaswani et al. 2017, eq. 1):

      Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V

  query [B, T, N, h], key/value [B, S, N, h] -> [B, T, N, h]. ``mask``
  (bool, True = attend) broadcasts to [B, N, T, S]; ``is_causal`` adds
  s ≤ t. A query row with no allowed key outputs 0 (never NaN).
  ``implementation``: see :func:`resolve_implementation`.
  """
  needs_weights = dropout_rng is not None and dropout_rate > 0.0
  used = resolve_implementation(implementation, query.dtype, query.shape[-1],
                                needs_weights=needs_weights)
  if used == "einsum":
    if is_causal:
      mask = combine_masks(mask, causal_mask(query.shape[1], key.shape[1]))
    if needs_weights:
      out, _ = _einsum_core(query, key, value, mask, heads_major=False,
                            dropout_rate=dropout_rate, dropout_rng=dropout_rng)
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

  Incremental decoding uses an explicit cache (a pytree, no hidden state):
  ``init_cache(B, L)`` -> ``{"key", "value": [B, N, L, h], "index": int32 []}``
  and ``decode(x [B, t, D], cache)`` appends t positions and attends causally
  over everything cached so far.
  """

  def __init__(self, in_features: int, num_heads: int, *,
               kv_features: int | None = None, qkv_features: int | None = None,
               out_features: int | None = None, dropout_rate: float = 0.0,
               use_bias: bool = True, implementation: str = "auto",
               rngs: nnx.Rngs):
    qkv = qkv_features or in_features
    if qkv % num_heads:
      raise ValueError(f"features {qkv} not divisible by num_heads {num_heads}")
    self.num_heads, self.head_dim = num_heads, qkv // num_heads
    self.dropout_rate = dropout_rate
    self.implementation = implementation
    kv_features = kv_features or in_features
    out_features = out_features or in_features
    N, h = num_heads, self.head_dim
    self.query = nnx.LinearGeneral(in_features, (N, h), use_bias=use_bias,
                                   rngs=rngs)
    self.key = nnx.LinearGeneral(kv_features, (N, h), use_bias=use_bias,
                                 rngs=rngs)
    self.value = nnx.LinearGeneral(kv_features, (N, h), use_bias=use_bias,
                                   rngs=rngs)
    self.out = nnx.LinearGeneral((N, h), out_features, axis=(-2, -1),
                                 use_bias=use_bias, rngs=rngs)

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
    return (self._project(self.key, inputs_kv, True),
            self._project(self.value, inputs_kv, True))

  def __call__(self, inputs_q: jax.Array, inputs_kv: jax.Array | None = None,
               mask: jax.Array | None = None, *, is_causal: bool = False,
               kv: tuple[jax.Array, jax.Array] | None = None,
               dropout_rng: jax.Array | None = None,
               return_weights: bool = False):
    """inputs_q [B, T, D], inputs_kv [B, S, D_kv] (or precomputed ``kv``) ->
    (out [B, T, D_out], weights [B, N, T, S] or None)."""
    needs = return_weights or (dropout_rng is not None and self.dropout_rate > 0)
    used = resolve_implementation(self.implementation, inputs_q.dtype,
                                  self.head_dim, needs_weights=needs)
    heads_major = used == "einsum" or kv is not None
    q = self._project(self.query, inputs_q, heads_major)
    if kv is not None:
      k, v = kv
    else:
      src = inputs_q if inputs_kv is None else inputs_kv
      k = self._project(self.key, src, heads_major)
      v = self._project(self.value, src, heads_major)
    T, S = inputs_q.shape[1], k.shape[2 if heads_major else 1]
    if used == "einsum":
      if is_causal:
        mask = combine_masks(mask, causal_mask(T, S))
      o, w = _einsum_core(q, k, v, mask, heads_major=True,
                          dropout_rate=self.dropout_rate, dropout_rng=dropout_rng,
                          need_weights=return_weights)
      return self._output(o, True), w
    if heads_major:  # precomputed kv arrive heads-major
      q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))
    o = _library_core(q, k, v, mask, is_causal, used)
    return self._output(o, False), None

  def init_cache(self, batch_size: int, max_length: int, dtype=jnp.float32) -> dict:
    shape = (batch_size, self.num_heads, max_length, self.head_dim)
    return {"key": jnp.zeros(shape, dtype), "value": jnp.zeros(shape, dtype),
            "index": jnp.zeros((), jnp.int32)}

  def decode(self, inputs: jax.Array, cache: dict, mask: jax.Array | None = None,
             *, return_weights: bool = False):
    """Causal self-attention of t new positions [B, t, D] given ``cache``.

    Writes their keys/values at ``cache["index"]``, attends each new position
    i (absolute index+i) to cached positions ≤ index+i. ``mask`` [B, 1|t, L]
    may also drop cached positions (e.g. padding). Returns (out, cache, weights).
    """
    t = inputs.shape[1]
    L = cache["key"].shape[2]
    idx = cache["index"]
    q = self._project(self.query, inputs, True)          # (B, N, t, h)
    k = self._project(self.key, inputs, True)
    v = self._project(self.value, inputs, True)
    keys = jax.lax.dynamic_update_slice(cache["key"], k.astype(cache["key"].dtype),
                                        (0, 0, idx, 0))
    values = jax.lax.dynamic_update_slice(cache["value"],
                                          v.astype(cache["value"].dtype),
                                          (0, 0, idx, 0))
    full_mask = causal_mask(t, L, offset=idx)            # (1, 1, t, L)
    if mask is not None:
      full_mask = full_mask & mask[:, None]
    o, w = _einsum_core(q, keys, values, full_mask, heads_major=True,
                        need_weights=return_weights)
    new_cache = {"key": keys, "value": values, "index": idx + t}
    return self._output(o, True), new_cache, w


# ---------------------------------------------------------------------------
# (3) Raschka, "Build a Large Language Model (from Scratch)", ch. 3
