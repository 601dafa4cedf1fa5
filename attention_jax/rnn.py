"""Recurrent cells and the scan layer that runs them over time.

Every cell has the same small interface so that one scan serves them all:

* ``input_projection(x) -> xp``: the part of the pre-activations that depends on
  the input only. It can be computed for all time steps at once ("hoisted") or
  inside the scan step.
* ``step(carry, xp) -> carry``: one recurrence step on projected input.
* ``output(carry) -> h``: the hidden state read out of the carry.
* ``initialize_carry(batch_shape) -> carry``.

Shapes: ``x: [batch, time, features]``; states ``[batch, hidden]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Carry = Any


class GRUCell(nnx.Module):
  """Gated recurrent unit (Cho et al. 2014, eqs. 5-8).

      r_t = σ(W_r x_t + U_r h_{t-1} + b_r)                       reset gate
      z_t = σ(W_z x_t + U_z h_{t-1} + b_z)                       update gate
      h̃_t = tanh(W x_t + U (r_t ⊙ h_{t-1}) + b)                  (Cho form)
      h̃_t = tanh(W x_t + r_t ⊙ (U h_{t-1} + b_hn) + b_in)        (reset_after)
      h_t = z_t ⊙ h_{t-1} + (1 − z_t) ⊙ h̃_t

  ``reset_after=False`` is the paper's form: the reset gate multiplies the state
  *before* the recurrent matmul. ``reset_after=True`` is the form of cuDNN,
  PyTorch and ``flax.nnx.GRUCell``: it multiplies the matmul's result, which
  lets all three recurrent matmuls run as one.

  Parameters: ``input_kernel [I, 3H]`` and ``input_bias [3H]`` (gate order
  r, z, n), ``recurrent_kernel [H, 3H]`` and, for ``reset_after``,
  ``recurrent_bias [3H]``.
  """

  def __init__(self, in_features: int, hidden_size: int, *,
               reset_after: bool = False, rngs: nnx.Rngs):
    self.hidden_size = hidden_size
    self.reset_after = reset_after
    k_in, k_rec = rngs.params(), rngs.params()
    H = hidden_size
    self.input_kernel = nnx.Param(
        nnx.initializers.lecun_normal()(k_in, (in_features, 3 * H)))
    self.input_bias = nnx.Param(jnp.zeros((3 * H,)))
    rec = [nnx.initializers.orthogonal()(k, (H, H))
           for k in jax.random.split(k_rec, 3)]
    self.recurrent_kernel = nnx.Param(jnp.concatenate(rec, axis=1))
    self.recurrent_bias = nnx.Param(jnp.zeros((3 * H,))) if reset_after else None

  def initialize_carry(self, batch_shape: tuple[int, ...]) -> jax.Array:
    return jnp.zeros((*batch_shape, self.hidden_size))

  def input_projection(self, x: jax.Array) -> jax.Array:
    return x @ self.input_kernel[...] + self.input_bias[...]  # [..., 3H]

  def step(self, h: jax.Array, xp: jax.Array) -> jax.Array:
    H = self.hidden_size
    U = self.recurrent_kernel[...]
    if self.reset_after:
      hp = h @ U + self.recurrent_bias[...]
      r = jax.nn.sigmoid(xp[..., :H] + hp[..., :H])
      z = jax.nn.sigmoid(xp[..., H:2 * H] + hp[..., H:2 * H])
      n = jnp.tanh(xp[..., 2 * H:] + r * hp[..., 2 * H:])
    else:
      hp = h @ U[:, :2 * H]
      r = jax.nn.sigmoid(xp[..., :H] + hp[..., :H])
      z = jax.nn.sigmoid(xp[..., H:2 * H] + hp[..., H:])
      n = jnp.tanh(xp[..., 2 * H:] + (r * h) @ U[:, 2 * H:])
    return z * h + (1.0 - z) * n

  def output(self, carry: jax.Array) -> jax.Array:
    return carry

  def __call__(self, carry, x):
    """Flax-style ``(carry, x) -> (carry, h)``."""
    carry = self.step(carry, self.input_projection(x))
    return carry, self.output(carry)


class ElmanCell(nnx.Module):
  """Simple (Elman 1990) recurrence: h_t = φ(W x_t + U h_{t-1} + b).

  ``activation``: ``tanh`` or ``relu``. ``recurrent_init``: ``orthogonal``
  (as flax), ``identity`` (with relu: the IRNN of Le et al. 2015) or
  ``uniform`` (±1/√H, the classic default under which gradients vanish fast).
  """

  def __init__(self, in_features: int, hidden_size: int, *,
               activation: str = "tanh", recurrent_init: str = "orthogonal",
               rngs: nnx.Rngs):
    self.hidden_size = hidden_size
    self.activation = {"tanh": jnp.tanh, "relu": jax.nn.relu}[activation]
    k_in, k_rec = rngs.params(), rngs.params()
    H = hidden_size
    self.input_kernel = nnx.Param(
        nnx.initializers.lecun_normal()(k_in, (in_features, H)))
    self.input_bias = nnx.Param(jnp.zeros((H,)))
    if recurrent_init == "orthogonal":
      U = nnx.initializers.orthogonal()(k_rec, (H, H))
    elif recurrent_init == "identity":
      U = jnp.eye(H)
    elif recurrent_init == "uniform":
      U = jax.random.uniform(k_rec, (H, H), minval=-1, maxval=1) / jnp.sqrt(H)
    else:
      raise ValueError(f"unknown recurrent_init {recurrent_init!r}")
    self.recurrent_kernel = nnx.Param(U)

  def initialize_carry(self, batch_shape: tuple[int, ...]) -> jax.Array:
    return jnp.zeros((*batch_shape, self.hidden_size))

  def input_projection(self, x: jax.Array) -> jax.Array:
    return x @ self.input_kernel[...] + self.input_bias[...]  # [..., H]

  def step(self, h: jax.Array, xp: jax.Array) -> jax.Array:
    return self.activation(xp + h @ self.recurrent_kernel[...])

  def output(self, carry: jax.Array) -> jax.Array:
    return carry

  def __call__(self, carry, x):
    carry = self.step(carry, self.input_projection(x))
    return carry, self.output(carry)


class LSTMCell(nnx.Module):
  """Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate of
  Gers et al. 2000), gate order i, f, g, o:

      i_t = σ(W_i x_t + U_i h_{t-1} + b_i)      f_t = σ(W_f x_t + U_f h_{t-1} + b_f)
      g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)   o_t = σ(W_o x_t + U_o h_{t-1} + b_o)
      c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t           h_t = o_t ⊙ tanh(c_t)

  ``forget_bias`` initialises b_f (1.0 by default, Jozefowicz et al. 2015).
  The carry is ``(c, h)``.
  """

  def __init__(self, in_features: int, hidden_size: int, *,
               forget_bias: float = 1.0, rngs: nnx.Rngs):
    self.hidden_size = hidden_size
    k_in, k_rec = rngs.params(), rngs.params()
    H = hidden_size
    self.input_kernel = nnx.Param(
        nnx.initializers.lecun_normal()(k_in, (in_features, 4 * H)))
    self.input_bias = nnx.Param(
        jnp.zeros((4 * H,)).at[H:2 * H].set(forget_bias))
    rec = [nnx.initializers.orthogonal()(k, (H, H))
           for k in jax.random.split(k_rec, 4)]
    self.recurrent_kernel = nnx.Param(jnp.concatenate(rec, axis=1))

  def initialize_carry(self, batch_shape: tuple[int, ...]):
    z = jnp.zeros((*batch_shape, self.hidden_size))
    return (z, z)

  def input_projection(self, x: jax.Array) -> jax.Array:
    return x @ self.input_kernel[...] + self.input_bias[...]  # [..., 4H]

  def step(self, carry, xp: jax.Array):
    c, h = carry
    H = self.hidden_size
    z = xp + h @ self.recurrent_kernel[...]
    i = jax.nn.sigmoid(z[..., :H])
    f = jax.nn.sigmoid(z[..., H:2 * H])
    g = jnp.tanh(z[..., 2 * H:3 * H])
    o = jax.nn.sigmoid(z[..., 3 * H:])
    c = f * c + i * g
    return (c, o * jnp.tanh(c))

  def output(self, carry) -> jax.Array:
    return carry[1]

  def __call__(self, carry, x):
    carry = self.step(carry, self.input_projection(x))
    return carry, self.output(carry)


CELLS = ("elman", "gru", "lstm")


def make_cell(kind: str, in_features: int, hidden_size: int, *, rngs: nnx.Rngs,
              **options):
  """A cell by name: ``elman``, ``gru`` or ``lstm``; ``options`` go to it."""
  cls = {"elman": ElmanCell, "gru": GRUCell, "lstm": LSTMCell}[kind]
  return cls(in_features, hidden_size, rngs=rngs, **options)


def scan(cell, xs: jax.Array, carry: Carry | None = None,
         mask: jax.Array | None = None, *, reverse: bool = False,
         hoist_input_projection: bool = False, unroll: int = 1
         ) -> tuple[Carry, jax.Array]:
  """Runs ``cell`` over ``xs [B, T, I]`` with ``jax.lax.scan``.

  ``mask [B, T]`` (True = real step): at a padded step the carry is left
  unchanged, so with right padding the final carry is the state at each
  sequence's true length, and a ``reverse`` scan starts at the true end.
  Outputs at padded steps are zeros.

  Returns ``(final_carry, outputs [B, T, H])``.
  """
  B, T = xs.shape[:2]
  if carry is None:
    carry = cell.initialize_carry((B,))
  if mask is None:
    mask = jnp.ones((B, T), dtype=bool)
  xs_t = jnp.swapaxes(xs, 0, 1)            # (T, B, I)
  mask_t = jnp.swapaxes(mask, 0, 1)        # (T, B)
  if hoist_input_projection:
    xs_t = cell.input_projection(xs_t)     # (T, B, G): one matmul for all steps

  def body(c, inputs):
    x, m = inputs
    xp = x if hoist_input_projection else cell.input_projection(x)
    new = cell.step(c, xp)
    new = jax.tree.map(lambda n, o: jnp.where(m[:, None], n, o), new, c)
    out = jnp.where(m[:, None], cell.output(new), 0.0)
    return new, out

  carry, ys = jax.lax.scan(body, carry, (xs_t, mask_t), reverse=reverse,
                           unroll=unroll)
  return carry, jnp.swapaxes(ys, 0, 1)     # (B, T, H)
