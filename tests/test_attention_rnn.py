"""Attention sections (1) additive/Luong and (3) Raschka ch. 3, against
independent references (NumPy loops, ``jax.nn.dot_product_attention``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attention_jax import attention as A

B, S, Q, K, D_ATT = 3, 6, 5, 4, 7
LENGTHS = np.array([6, 3, 1])


def _inputs(seed=0):
  r = np.random.default_rng(seed)
  query = r.normal(size=(B, Q)).astype(np.float32)
  values = r.normal(size=(B, S, K)).astype(np.float32)
  mask = np.arange(S)[None, :] < LENGTHS[:, None]
  return query, values, mask


def _np_softmax_masked(e, m):
  out = np.zeros_like(e, dtype=np.float64)
  ex = np.exp(e[m] - e[m].max())
  out[m] = ex / ex.sum()
  return out


def test_additive_attention_matches_numpy_loop():
  query, values, mask = _inputs()
  att = A.AdditiveAttention(Q, K, D_ATT, rngs=nnx.Rngs(0))
  keys = att.keys(jnp.asarray(values))
  context, weights = att(jnp.asarray(query), keys, jnp.asarray(values), jnp.asarray(mask))
  W = np.asarray(att.query_proj.kernel[...], np.float64)  # (Q, A)
  U = np.asarray(att.key_proj.kernel[...], np.float64)  # (K, A)
  b = np.asarray(att.key_proj.bias[...], np.float64)
  v = np.asarray(att.v[...], np.float64)
  for i in range(B):
    e = np.array([v @ np.tanh(query[i] @ W + values[i, j] @ U + b) for j in range(S)])
    alpha = _np_softmax_masked(e, mask[i])
    c = sum(alpha[j] * values[i, j] for j in range(S))
    np.testing.assert_allclose(weights[i], alpha, atol=1e-6)
    np.testing.assert_allclose(context[i], c, atol=1e-5)


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_scores_match_numpy_loop(score):
  query, values, mask = _inputs(1)
  values = np.concatenate([values, values[..., :1]], -1)  # K = Q = 5 for dot
  att = A.LuongAttention(Q, Q, score, D_ATT, rngs=nnx.Rngs(1))
  keys = att.keys(jnp.asarray(values))
  context, weights = att(jnp.asarray(query), keys, jnp.asarray(values), jnp.asarray(mask))
  for i in range(B):
    h = query[i].astype(np.float64)
    if score == "dot":
      e = np.array([h @ values[i, s] for s in range(S)])
    elif score == "general":
      Wa = np.asarray(att.W_a.kernel[...], np.float64).T  # h_tᵀ W_a h̄_s
      e = np.array([h @ Wa @ values[i, s] for s in range(S)])
    else:
      Wa = np.concatenate(
        [np.asarray(att.query_proj.kernel[...]), np.asarray(att.key_proj.kernel[...])], 0
      ).T  # (A, 2Q)
      v = np.asarray(att.v[...], np.float64)
      e = np.array([v @ np.tanh(Wa @ np.concatenate([h, values[i, s]])) for s in range(S)])
    alpha = _np_softmax_masked(e, mask[i])
    np.testing.assert_allclose(weights[i], alpha, atol=1e-5)
    np.testing.assert_allclose(context[i], alpha @ values[i], atol=1e-5)


@pytest.mark.parametrize("kind", ["additive", "dot", "general", "concat"])
def test_weights_sum_to_one_over_real_positions_and_zero_on_padding(kind):
  query, values, mask = _inputs(2)
  if kind == "additive":
    att = A.AdditiveAttention(Q, K, D_ATT, rngs=nnx.Rngs(2))
  else:
    values = np.concatenate([values, values[..., :1]], -1)
    att = A.LuongAttention(Q, Q, kind, rngs=nnx.Rngs(2))
  # Large values in the padding must not leak into the weights.
  values = np.where(mask[..., None], values, 1e3).astype(np.float32)
  keys = att.keys(jnp.asarray(values))
  context, weights = att(jnp.asarray(query), keys, jnp.asarray(values), jnp.asarray(mask))
  weights = np.asarray(weights)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)
  assert np.all(weights[~mask] == 0.0)
  assert np.all(weights[mask] > 0.0)
  assert np.abs(np.asarray(context)).max() < 100  # no padding value mixed in


def test_attend_fully_masked_row_is_zero_not_nan():
  scores = jnp.ones((2, 4))
  values = jnp.ones((2, 4, 3))
  mask = jnp.array([[True, True, False, False], [False] * 4])
  context, weights = A.attend(scores, values, mask)
  assert np.all(np.isfinite(weights)) and np.all(np.isfinite(context))
  np.testing.assert_array_equal(weights[1], 0.0)
  np.testing.assert_allclose(weights[0], [0.5, 0.5, 0, 0])


# ---------------------------------------------------------------------------
# (3) Raschka, "Build a Large Language Model (from Scratch)", ch. 3

# "Your journey starts with one step"
INPUTS = jnp.array(
  [
    [0.43, 0.15, 0.89],
    [0.55, 0.87, 0.66],
    [0.57, 0.85, 0.64],
    [0.22, 0.58, 0.33],
    [0.77, 0.25, 0.10],
    [0.05, 0.80, 0.55],
  ]
)


def test_raschka_golden_values():
  context, weights = A.simple_self_attention(INPUTS)
  np.testing.assert_allclose(
    weights[1], [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581], atol=5e-5
  )
  np.testing.assert_allclose(context[1], [0.4419, 0.6515, 0.5683], atol=5e-5)
  np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


def _weights(seed, d_in=3, d_out=4, n=3):
  keys = jax.random.split(jax.random.key(seed), n)
  return [jax.random.uniform(k, (d_in, d_out)) for k in keys]


@pytest.mark.parametrize("causal", [False, True])
def test_raschka_qkv_matches_dot_product_attention(causal):
  wq, wk, wv = _weights(0)
  context, weights = A.self_attention_qkv(INPUTS, wq, wk, wv, causal=causal)
  q, k, v = (INPUTS @ w for w in (wq, wk, wv))
  ref = jax.nn.dot_product_attention(
    q[None, :, None], k[None, :, None], v[None, :, None], is_causal=causal
  )[0, :, 0]
  np.testing.assert_allclose(context, ref, atol=1e-6)
  if causal:
    assert np.all(np.asarray(weights)[np.triu_indices(6, 1)] == 0.0)
    # The book's first variant: mask *after* the softmax, then renormalise.
    _, full = A.self_attention_qkv(INPUTS, wq, wk, wv)
    masked = np.tril(np.asarray(full))
    np.testing.assert_allclose(weights, masked / masked.sum(-1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(context, A.causal_self_attention(INPUTS, wq, wk, wv)[0], atol=0)


def test_raschka_multi_head_equals_stacked_single_heads():
  x = jnp.stack([INPUTS, INPUTS[::-1]])  # (2, 6, 3): batch
  wq, wk, wv = _weights(1, d_out=4)
  wo = _weights(2, d_in=4, d_out=4, n=1)[0]
  context, weights = A.multi_head_self_attention(x, wq, wk, wv, wo, num_heads=2)
  assert context.shape == (2, 6, 4) and weights.shape == (2, 2, 6, 6)
  heads = [
    A.causal_self_attention(
      x, wq[:, h * 2 : (h + 1) * 2], wk[:, h * 2 : (h + 1) * 2], wv[:, h * 2 : (h + 1) * 2]
    )[0]
    for h in range(2)
  ]
  np.testing.assert_allclose(context, jnp.concatenate(heads, -1) @ wo, atol=1e-6)
  one, _ = A.multi_head_self_attention(x, wq, wk, wv, num_heads=1)
  np.testing.assert_allclose(one, A.causal_self_attention(x, wq, wk, wv)[0], atol=1e-6)
