"""Where a token is: the position schemes of ``model.position`` (docs/models.md#transformer).

* ``sinusoidal`` (Vaswani et al. 2017, §3.5): PE(p, 2i) = sin(p / 10000^{2i/d}), cos at 2i+1;
* ``learned``: a trained table W_p [max_positions, d] (Gehring et al. 2017; Radford et al. 2018);
* ``rope`` (Su et al. 2021, eq. 34): q and k of position p rotated pairwise by p·θ_i,
  θ_i = 10000^{-2i/h}, so q_m·k_n depends on m − n only;
* ``alibi`` (Press et al. 2022): softmax(q_i·k_jᵀ/√h − m·|i − j|), a fixed slope m per head;
* ``none``: a causal decoder infers positions from its mask (Haviv et al. 2022; Kazemnejad
  et al. 2023); an encoder would see a bag of tokens, so it is refused there.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

SCHEMES = ("auto", "sinusoidal", "learned", "rope", "alibi", "none")
EMBEDDING_SCHEMES = ("sinusoidal", "learned")  # added to the token embeddings
ATTENTION_SCHEMES = ("rope", "alibi")  # inside self-attention
AUTO = {"transformer": "sinusoidal", "gpt": "learned"}


def scheme_for(scheme: str, model_name: str) -> str:
  """``auto`` -> the model's original scheme; others unchanged."""
  return AUTO[model_name] if scheme == "auto" else scheme


def sinusoidal(positions: jax.Array, dim: int) -> jax.Array:
  """[..., T] positions -> [..., T, dim] sinusoids of Vaswani et al. 2017,
  Section 3.5 (sin in even, cos in odd features), float32."""
  i = jnp.arange(0, dim, 2, dtype=jnp.float32)  # 2i
  angle = jnp.asarray(positions, jnp.float32)[..., None] / jnp.power(
    10000.0, i / dim
  )  # (..., T, dim/2)
  table = jnp.stack([jnp.sin(angle), jnp.cos(angle)], axis=-1)  # (..., T, dim/2, 2)
  return table.reshape(*angle.shape[:-1], -1)[..., :dim]


def rope(
  x: jax.Array, positions: jax.Array, *, heads_major: bool, base: float = 10000.0
) -> jax.Array:
  """Rotary position embedding (Su et al. 2021, eq. 34) of queries or keys.

  x [B, N, T, h] (``heads_major``) or [B, T, N, h]; positions [B|1, T] int.
  Each pair of features (x_{2i}, x_{2i+1}) is rotated by the angle p·θ_i,
  θ_i = base^{-2i/h}:

      (x_{2i}, x_{2i+1}) -> (x_{2i} cos pθ_i − x_{2i+1} sin pθ_i,
                             x_{2i} sin pθ_i + x_{2i+1} cos pθ_i)

  A rotation by p then one by −n is one by p − n, so the score of a query at
  m and a key at n is a function of m − n (and of the contents) only.
  Computed in float32, returned in x's dtype. h must be even.
  """
  h = x.shape[-1]
  theta = base ** (-jnp.arange(0, h, 2, dtype=jnp.float32) / h)  # (h/2,)
  angle = jnp.asarray(positions, jnp.float32)[..., None] * theta  # (B|1, T, h/2)
  if heads_major:
    angle = angle[:, None]  # (B|1, 1, T, h/2)
  else:
    angle = angle[:, :, None]  # (B|1, T, 1, h/2)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], h // 2, 2)
  a, b = pairs[..., 0], pairs[..., 1]
  out = jnp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1)
  return out.reshape(x.shape).astype(x.dtype)


def alibi_slopes(num_heads: int) -> list[float]:
  """ALiBi's head slopes (Press et al. 2022, Section 3, and their reference
  code ``get_slopes``): for n a power of two, the geometric sequence
  m_i = 2^{−8i/n}, i = 1…n (n = 8: 1/2, 1/4, …, 1/256); otherwise the slopes
  of the closest smaller power of two 2^k, then every other slope of 2^{k+1}
  heads, until there are n."""

  def power_of_2(n):
    start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))  # 2^{−8/n}
    return [start * start**i for i in range(n)]

  if math.log2(num_heads).is_integer():
    return power_of_2(num_heads)
  closest = 2 ** math.floor(math.log2(num_heads))
  return power_of_2(closest) + alibi_slopes(2 * closest)[0::2][: num_heads - closest]


def alibi_bias(slopes, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array:
  """The ALiBi bias −m_h·|i − j| added to the attention scores.

  slopes [N]; q_positions [B|1, T], k_positions [B|1, S] (int) ->
  [B|1, N, T, S] float32. Under a causal mask (j ≤ i) this is the paper's
  −m·(i − j); in an encoder it penalizes distance in both directions.
  """
  m = jnp.asarray(np.asarray(slopes, np.float32))  # (N,)
  q = jnp.asarray(q_positions)[:, None, :, None]
  k = jnp.asarray(k_positions)[:, None, None, :]
  distance = jnp.abs(q - k).astype(jnp.float32)  # (B|1, 1, T, S)
  return -m[None, :, None, None] * distance
