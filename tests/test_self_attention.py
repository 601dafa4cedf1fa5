"""Scaled dot-product and multi-head attention (attention.py section 2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attention_jax import attention
from attention_jax.testing import decode_in_steps

B, T, S, N, H = 2, 5, 7, 2, 8  # batch, query len, key len, heads, head dim


def _qkv(seed=0, t=T, s=S):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
  return (
    jax.random.normal(k1, (B, t, N, H)),
    jax.random.normal(k2, (B, s, N, H)),
    jax.random.normal(k3, (B, s, N, H)),
  )


def _key_padding(lengths, s=S):
  return jnp.arange(s)[None, :] < jnp.asarray(lengths)[:, None]  # (B, S)


@pytest.mark.parametrize("impl", ["einsum", "xla"])
@pytest.mark.parametrize("masking", ["none", "causal", "padding", "both"])
def test_sdpa_matches_jax_dot_product_attention(impl, masking):
  t = s = 6 if masking in ("causal", "both") else None
  q, k, v = _qkv(1, t or T, s or S)
  S_ = k.shape[1]
  mask = None
  if masking in ("padding", "both"):
    mask = attention.padding_mask(None, _key_padding([S_, 3], S_))  # (B, 1, 1, S)
  causal = masking in ("causal", "both")
  got = attention.scaled_dot_product_attention(q, k, v, mask, is_causal=causal, implementation=impl)
  want = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal)
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)
  # and against the formula written out in numpy
  qn, kn, vn = (np.asarray(a, np.float64) for a in (q, k, v))
  scores = np.einsum("btnh,bsnh->bnts", qn, kn) / np.sqrt(H)
  allowed = np.ones(scores.shape, bool)
  if mask is not None:
    allowed &= np.asarray(mask)
  if causal:
    allowed &= np.tril(np.ones((q.shape[1], S_), bool))
  scores = np.where(allowed, scores, -np.inf)
  w = np.exp(scores - scores.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  np.testing.assert_allclose(got, np.einsum("bnts,bsnh->btnh", w, vn), atol=2e-5)


@pytest.mark.parametrize("impl", ["einsum", "xla"])
def test_fully_masked_row_is_zero_not_nan(impl):
  q, k, v = _qkv(2)
  mask = np.ones((B, 1, T, S), bool)
  mask[0, 0, 2, :] = False  # query 2 of example 0 sees nothing
  mask = jnp.asarray(mask)
  out = attention.scaled_dot_product_attention(q, k, v, mask, implementation=impl)
  assert np.all(np.isfinite(out))
  np.testing.assert_array_equal(out[0, 2], 0.0)
  assert np.abs(np.asarray(out[0, 1])).sum() > 0
  grads = jax.grad(
    lambda q, k, v: attention.scaled_dot_product_attention(
      q, k, v, mask, implementation=impl
    ).sum(),
    argnums=(0, 1, 2),
  )(q, k, v)
  assert all(np.all(np.isfinite(g)) for g in grads)
  w = attention.dot_product_attention_weights(q, k, mask)
  np.testing.assert_array_equal(w[0, :, 2], 0.0)
  np.testing.assert_allclose(w[1].sum(-1), 1.0, rtol=1e-6)


def test_implementation_choice_is_observable():
  q, k, v = _qkv(3)
  backend = jax.default_backend()
  attention.scaled_dot_product_attention(q, k, v, implementation="cudnn")
  if backend != "gpu":  # float32 or no GPU: cudnn falls back to xla, with a reason
    assert attention.last_path["used"] == "xla"
    assert "cudnn unavailable" in attention.last_path["reason"]
  # float32 is never cudnn: auto takes the einsum path on every backend
  assert attention.choose_implementation("auto", jnp.float32, 8) == "einsum"
  assert attention.choose_implementation("xla", jnp.float32, 8, needs_weights=True) == "einsum"
  with pytest.raises(ValueError, match="allowed"):
    attention.choose_implementation("flash", jnp.float32, 8)


def _copy_into_flax(ours, ref):
  for name in ("query", "key", "value", "out"):
    getattr(ref, name).kernel.value = getattr(ours, name).kernel.value
    getattr(ref, name).bias.value = getattr(ours, name).bias.value


@pytest.mark.parametrize("impl", ["einsum", "xla"])
def test_mha_matches_flax_multi_head_attention(impl):
  D, Dkv = 16, 12
  ours = attention.MultiHeadAttention(D, 4, kv_features=Dkv, implementation=impl, rngs=nnx.Rngs(0))
  ref = nnx.MultiHeadAttention(4, D, in_kv_features=Dkv, decode=False, rngs=nnx.Rngs(1))
  _copy_into_flax(ours, ref)
  x = jax.random.normal(jax.random.PRNGKey(0), (B, T, D))
  m = jax.random.normal(jax.random.PRNGKey(1), (B, S, Dkv))
  pad = attention.padding_mask(None, _key_padding([S, 4]))  # (B, 1, 1, S)
  got, _ = ours(x, m, mask=pad)
  np.testing.assert_allclose(got, ref(x, m, m, mask=pad), atol=1e-5)
  # self-attention, causal
  self_ours = attention.MultiHeadAttention(D, 4, implementation=impl, rngs=nnx.Rngs(2))
  self_ref = nnx.MultiHeadAttention(4, D, decode=False, rngs=nnx.Rngs(3))
  _copy_into_flax(self_ours, self_ref)
  got, _ = self_ours(x, is_causal=True)
  want = self_ref(x, mask=nnx.make_causal_mask(jnp.ones((B, T))))
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_mha_weights_and_dropout():
  mha = attention.MultiHeadAttention(16, 4, dropout_rate=0.5, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(0), (B, T, 16))
  out, w = mha(x, is_causal=True, return_weights=True)
  assert w.shape == (B, 4, T, T)
  np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(np.triu(np.asarray(w[0, 0]), 1), 0.0)
  again, _ = mha(x, is_causal=True)  # no rng: no dropout
  np.testing.assert_allclose(out, again, atol=1e-6)
  dropped, _ = mha(x, is_causal=True, dropout_rng=jax.random.PRNGKey(5))
  assert np.abs(np.asarray(dropped - out)).max() > 1e-3


def test_kv_cache_decoding_equals_full_recomputation():
  D, L = 16, 9
  mha = attention.MultiHeadAttention(D, 4, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(0), (B, 6, D))
  full, _ = mha(x, is_causal=True)
  decode = jax.jit(lambda x, c: mha.decode(x, c)[:2])
  # prefill 2 positions, then 4 single steps
  inc, cache = decode_in_steps(decode, x, mha.init_cache(B, L), prefill=2)
  assert int(cache["index"]) == 6
  np.testing.assert_allclose(inc, full, atol=1e-5)


def test_hand_written_backward_matches_autodiff():
  q, k, v = (jnp.swapaxes(a, 1, 2) for a in _qkv(4, 6, 6))  # (B, N, T, h)
  mask = attention.combine_masks(
    attention.causal_mask(6, 6), attention.padding_mask(None, _key_padding([6, 4], 6))
  )
  cot = jax.random.normal(jax.random.PRNGKey(9), q.shape)

  def fast(q, k, v):
    return (
      attention._einsum_core(q, k, v, mask, heads_major=True, need_weights=False)[0] * cot
    ).sum()

  def ref(q, k, v):  # autodiff through the masked softmax
    scores = jnp.einsum("bnth,bnsh->bnts", q, k) / np.sqrt(q.shape[-1])
    w = attention.masked_softmax(scores, mask)
    return (jnp.einsum("bnts,bnsh->bnth", w, v) * cot).sum()

  np.testing.assert_allclose(fast(q, k, v), ref(q, k, v), rtol=1e-6)
  for a, b in zip(
    jax.grad(fast, (0, 1, 2))(q, k, v), jax.grad(ref, (0, 1, 2))(q, k, v), strict=True
  ):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # and by finite differences along a random direction
  d = [jax.random.normal(jax.random.PRNGKey(i), q.shape) for i in range(3)]
  eps = 1e-2
  g = jax.grad(fast, (0, 1, 2))(q, k, v)
  plus = fast(q + eps * d[0], k + eps * d[1], v + eps * d[2])
  minus = fast(q - eps * d[0], k - eps * d[1], v - eps * d[2])
  directional = sum(float((gi * di).sum()) for gi, di in zip(g, d, strict=True))
  assert abs((plus - minus) / (2 * eps) - directional) < 1e-2 * max(1, abs(directional))


def test_one_pass_softmax_equals_masked_softmax_and_weights_beside_the_output():
  """The heads-major path's softmax (mask as an additive term, fully masked
  rows through the normaliser) gives masked_softmax's values, zeros on a
  fully masked row included; the weights asked for beside the hand-written
  backward's output are those weights, and their gradient is autodiff's."""
  q, k, v = (jnp.swapaxes(a, 1, 2) for a in _qkv(4, 6, 6))  # (B, N, T, h)
  mask = np.asarray(
    attention.combine_masks(
      attention.causal_mask(6, 6), attention.padding_mask(None, _key_padding([6, 4], 6))
    )
  ).repeat(q.shape[1], axis=1)
  mask[1, 0, 3, :] = False  # a fully masked row
  mask = jnp.asarray(mask)
  scores = jax.random.normal(jax.random.PRNGKey(3), (B, q.shape[1], 6, 6)) * 5
  bias = jax.random.normal(jax.random.PRNGKey(4), (1, q.shape[1], 6, 6))
  got = attention._softmax_scores(scores, mask, bias)
  want = attention.masked_softmax(scores + bias, mask)
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(got[1, 0, 3], 0.0)
  out, w = attention._einsum_core(q, k, v, mask, heads_major=True, need_weights=True)
  ref_scores = jnp.einsum("bnth,bnsh->bnts", q, k) / np.sqrt(q.shape[-1])
  np.testing.assert_allclose(w, attention.masked_softmax(ref_scores, mask), atol=1e-6)
  np.testing.assert_allclose(out, jnp.einsum("bnts,bnsh->bnth", w, v), atol=1e-6)
  cot = jax.random.normal(jax.random.PRNGKey(5), w.shape)

  def of_weights(q, k):
    return (attention._einsum_core(q, k, v, mask, heads_major=True)[1] * cot).sum()

  def ref(q, k):
    s = jnp.einsum("bnth,bnsh->bnts", q, k) / np.sqrt(q.shape[-1])
    return (attention.masked_softmax(s, mask) * cot).sum()

  for a, b in zip(jax.grad(of_weights, (0, 1))(q, k), jax.grad(ref, (0, 1))(q, k), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5)
