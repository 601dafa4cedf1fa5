"""Small building blocks shared by the model families."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def dropout(x: jax.Array, rate: float, rng: jax.Array | None) -> jax.Array:
  """Inverted dropout; the identity when ``rng`` is None (evaluation) or rate 0."""
  if rng is None or rate == 0.0:
    return x
  keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


@jax.custom_vjp
def take_rows(table: jax.Array, ids: jax.Array) -> jax.Array:
  """``table[ids]``: table [V, D], ids [...] int -> [..., D].

  Its gradient sums the rows' cotangents in at least float32 and rounds once:
  autodiff of a bfloat16 lookup would scatter-add in bfloat16, where a token
  seen 4,096 times in a batch gets a gradient of 256 instead of ~2,048 (the
  sum stops growing once it is 256 times a term).
  """
  return jnp.take(table, ids, axis=0)


def _take_rows_fwd(table, ids):
  return jnp.take(table, ids, axis=0), (table, ids)  # the table only for its shape


def _take_rows_bwd(res, g):
  table, ids = res
  acc = jnp.promote_types(table.dtype, jnp.float32)
  grad = (
    jnp.zeros(table.shape, acc).at[ids.reshape(-1)].add(g.reshape(-1, table.shape[-1]).astype(acc))
  )
  return grad.astype(table.dtype), None


take_rows.defvjp(_take_rows_fwd, _take_rows_bwd)


@jax.custom_vjp
def _dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jax.lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def _dense_fwd(x, kernel):
  return _dense(x, kernel), (x, kernel)


def _dense_bwd(res, g):
  """dx = g Wᵀ;  dW = xᵀ g over all M = B·T rows, as a plain matmul.

  Left to itself, XLA on the CPU contracts over the leading (row) axis of
  both operands, a form the fast matmul library it calls (YNNPACK) does not
  take; it then falls back to a generic dot several times slower (the
  Transformer's feed-forward weight gradients, docs/performance.md). Here the
  smaller of x [M, K] and g [M, N] is transposed into a copy first (the
  optimisation barrier keeps XLA from folding the transpose back into the
  dot): dW = (xᵀ) g, or dW = ((gᵀ) x)ᵀ.
  """
  x, kernel = res
  dx = jax.lax.dot_general(g, kernel, (((g.ndim - 1,), (1,)), ((), ())))
  x2 = x.reshape(-1, x.shape[-1])  # (M, K)
  g2 = g.reshape(-1, g.shape[-1])  # (M, N)
  plain = (((1,), (0,)), ((), ()))
  if x2.shape[1] <= g2.shape[1]:
    dkernel = jax.lax.dot_general(jax.lax.optimization_barrier(x2.T), g2, plain)  # (K, N)
  else:
    dkernel_t = jax.lax.dot_general(jax.lax.optimization_barrier(g2.T), x2, plain)  # (N, K)
    dkernel = jax.lax.optimization_barrier(dkernel_t).T
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


def dense(layer: nnx.Linear, x: jax.Array) -> jax.Array:
  """``layer(x)`` for an ``nnx.Linear`` (y = x W + b: the same values and
  dtypes) with the weight gradient as one plain matmul (:func:`_dense_bwd`)."""
  kernel = layer.kernel[...]
  bias = layer.bias[...] if layer.bias is not None else None
  x, kernel, bias = layer.promote_dtype((x, kernel, bias), dtype=layer.dtype)
  y = _dense(x, kernel)
  if bias is not None:
    y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
  return y


class Embed(nnx.Embed):
  """``nnx.Embed`` that looks up and attends in its table's dtype at call time.

  ``nnx.Embed`` fixes its compute dtype when built (float32), so a table cast
  to bfloat16 for mixed precision (``step.merge_for_compute``) would be cast
  back, and every product downstream would run in float32. Here the table's
  own dtype decides: bfloat16 under bf16 compute, float64 in the gradient
  instruments. The lookup's gradient accumulates in float32
  (:func:`take_rows`). Parameters and initialisation are ``nnx.Embed``'s.
  """

  def __call__(self, inputs: jax.Array) -> jax.Array:
    """inputs [...] int -> [..., features]."""
    return take_rows(self.embedding[...], inputs)

  def attend(self, query: jax.Array) -> jax.Array:
    """query [..., features] -> [..., num_embeddings] (tied output layer)."""
    table = self.embedding[...]
    return query.astype(table.dtype) @ table.T


READOUTS = ("linear", "maxout")  # model.readout


def readout_keys(model_config) -> tuple[str, ...]:
  """The ``model.*`` keys a :class:`Readout` reads (``readout_dim`` with maxout only)."""
  return ("readout", "readout_dim") if model_config.readout == "maxout" else ("readout",)


class Readout(nnx.Module):
  """Output layer p(y_t | ·) = softmax(W_o t_t) over a feature vector.

  ``maxout`` (Cho et al. 2014 eq. 12; Bahdanau et al. 2014 A.2.2):
      t̃ = O f;   t_j = max(t̃_{2j-1}, t̃_{2j});   logits = W_o t
  ``linear``: logits = W_o f.
  """

  def __init__(
    self,
    in_features: int,
    vocab_size: int,
    *,
    kind: str = "linear",
    maxout_units: int = 0,
    rngs: nnx.Rngs,
  ):
    self.kind = kind
    if kind == "maxout":
      self.pre = nnx.Linear(in_features, 2 * maxout_units, rngs=rngs)
      self.out = nnx.Linear(maxout_units, vocab_size, rngs=rngs)
    else:
      self.pre = None
      self.out = nnx.Linear(in_features, vocab_size, rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    if self.kind == "maxout":
      t = self.pre(features)
      t = t.reshape(*t.shape[:-1], -1, 2).max(axis=-1)
      return self.out(t)
    return self.out(features)
