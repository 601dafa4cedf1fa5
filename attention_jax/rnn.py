"""Recurrent cells (Elman, GRU, LSTM) and the scan layer that runs them over time.

Every cell has the small interface of :class:`_Cell`, so that one :func:`scan` serves them
all; each cell's docstring gives its equations. Shapes: ``x: [batch, time, features]``;
states ``[batch, hidden]``.
Documented in docs/models.md#recurrent-layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Carry = Any
MatMul = Callable[[int, jax.Array], jax.Array]


def _matmul_with(weights) -> MatMul:
  """``matmul(k, a) = a @ kernel_k (+ bias_k)`` over ``recurrent_weights()``."""

  def matmul(k, a):
    kernel, bias = weights[k]
    y = a @ kernel
    return y if bias is None else y + bias

  return matmul


class _Cell(nnx.Module):
  """Shared plumbing: input projection, ``step`` via ``step_parts``, Flax call.

  The interface every cell has, so that one scan serves them all:

  * ``input_projection(x) -> xp``: the part of the pre-activations that depends
    on the input only, ``x @ input_kernel + input_bias``; computed for all time
    steps at once ("hoisted") or inside the scan step;
  * ``step(carry, xp) -> carry``: one recurrence step on projected input;
  * ``output(carry) -> h``: the hidden state read out of the carry;
  * ``initialize_carry(batch_shape) -> carry``, in the dtype of the cell's
    weights (the compute dtype: bfloat16 weights give a bfloat16 state, so no
    recurrent product is promoted to float32).

  For the fused backward pass (:func:`scan` with ``backward="fused"``) a cell
  also exposes its recurrence with the matrix products made explicit:
  ``recurrent_weights() -> ((kernel, bias | None), ...)`` and
  ``step_parts(carry, xp, matmul)``, where ``matmul(k, a)`` stands for
  ``a @ kernel_k + bias_k``; ``step`` is ``step_parts`` with the real products.
  """

  hidden_size: int

  def initialize_carry(self, batch_shape: tuple[int, ...]) -> Carry:
    return jnp.zeros((*batch_shape, self.hidden_size), self.input_kernel[...].dtype)

  def input_projection(self, x: jax.Array) -> jax.Array:
    return x @ self.input_kernel[...] + self.input_bias[...]  # [..., G]

  def input_projection_part(self, x: jax.Array, start: int, *, bias: bool) -> jax.Array:
    """The projection of input features ``start:start + x.shape[-1]`` of a
    concatenated input, ``x @ input_kernel[start:…]`` (``+ input_bias`` if
    ``bias``): the parts of ``[a; b]`` sum to ``input_projection``. Lets an
    attention decoder hoist the part that does not depend on the step."""
    kernel = self.input_kernel[...][start : start + x.shape[-1]]
    y = x @ kernel
    return y + self.input_bias[...] if bias else y

  def step(self, carry: Carry, xp: jax.Array) -> Carry:
    return self.step_parts(carry, xp, _matmul_with(self.recurrent_weights()))

  def output(self, carry: Carry) -> jax.Array:
    return carry

  def __call__(self, carry, x):
    """Flax-style ``(carry, x) -> (carry, h)``."""
    carry = self.step(carry, self.input_projection(x))
    return carry, self.output(carry)


class GRUCell(_Cell):
  """Gated recurrent unit (Cho et al. 2014, eqs. 5-8).

      r_t = σ(W_r x_t + U_r h_{t-1} + b_r)                       reset gate
      z_t = σ(W_z x_t + U_z h_{t-1} + b_z)                       update gate
      h̃_t = tanh(W x_t + U (r_t ⊙ h_{t-1}) + b)                  (Cho form)
      h̃_t = tanh(W x_t + r_t ⊙ (U h_{t-1} + b_hn) + b_in)        (reset_after)
      h_t = z_t ⊙ h_{t-1} + (1 − z_t) ⊙ h̃_t

  ``reset_after=False`` is the paper's form: the reset gate multiplies the state
  *before* the recurrent matmul, so each step needs two dependent products.
  ``reset_after=True`` is the form of cuDNN, PyTorch and ``flax.nnx.GRUCell``:
  it multiplies the matmul's result, which lets all three recurrent matmuls run
  as one.

  Parameters: ``input_kernel [I, 3H]`` and ``input_bias [3H]`` (gate order
  r, z, n), ``recurrent_kernel [H, 3H]`` and, for ``reset_after``,
  ``recurrent_bias [3H]``.
  """

  def __init__(
    self, in_features: int, hidden_size: int, *, reset_after: bool = False, rngs: nnx.Rngs
  ):
    self.hidden_size = hidden_size
    self.reset_after = reset_after
    k_in, k_rec = rngs.params(), rngs.params()
    H = hidden_size
    self.input_kernel = nnx.Param(nnx.initializers.lecun_normal()(k_in, (in_features, 3 * H)))
    self.input_bias = nnx.Param(jnp.zeros((3 * H,)))
    rec = [nnx.initializers.orthogonal()(k, (H, H)) for k in jax.random.split(k_rec, 3)]
    self.recurrent_kernel = nnx.Param(jnp.concatenate(rec, axis=1))
    self.recurrent_bias = nnx.Param(jnp.zeros((3 * H,))) if reset_after else None

  def recurrent_weights(self):
    U = self.recurrent_kernel[...]
    if self.reset_after:
      return ((U, self.recurrent_bias[...]),)
    H = self.hidden_size
    return ((U[:, : 2 * H], None), (U[:, 2 * H :], None))

  def step_parts(self, h: jax.Array, xp: jax.Array, matmul: MatMul) -> jax.Array:
    H = self.hidden_size
    hp = matmul(0, h)  # (B, 3H) or (B, 2H)
    r = jax.nn.sigmoid(xp[..., :H] + hp[..., :H])
    z = jax.nn.sigmoid(xp[..., H : 2 * H] + hp[..., H : 2 * H])
    if self.reset_after:
      n = jnp.tanh(xp[..., 2 * H :] + r * hp[..., 2 * H :])
    else:
      n = jnp.tanh(xp[..., 2 * H :] + matmul(1, r * h))
    return z * h + (1.0 - z) * n


ELMAN_ACTIVATIONS = ("tanh", "relu")
ELMAN_INITS = ("orthogonal", "identity", "uniform")


class ElmanCell(_Cell):
  """Simple recurrence (Elman 1990): h_t = φ(W x_t + U h_{t-1} + b).

  ``activation``: ``tanh`` or ``relu``. ``recurrent_init`` for U:
  ``orthogonal`` (as flax), ``identity`` (with relu: the IRNN of Le et al.
  2015, "A simple way to initialize recurrent networks of rectified linear
  units") or ``uniform`` (U[−1/√H, 1/√H], the classic default under which
  gradients vanish fast).
  """

  def __init__(
    self,
    in_features: int,
    hidden_size: int,
    *,
    activation: str = "tanh",
    recurrent_init: str = "orthogonal",
    rngs: nnx.Rngs,
  ):
    if activation not in ELMAN_ACTIVATIONS:
      raise ValueError(
        f"ElmanCell activation {activation!r}; allowed: {', '.join(ELMAN_ACTIVATIONS)}"
      )
    if recurrent_init not in ELMAN_INITS:
      raise ValueError(
        f"ElmanCell recurrent_init {recurrent_init!r}; allowed: {', '.join(ELMAN_INITS)}"
      )
    self.hidden_size = hidden_size
    self.activation = {"tanh": jnp.tanh, "relu": jax.nn.relu}[activation]
    k_in, k_rec = rngs.params(), rngs.params()
    H = hidden_size
    self.input_kernel = nnx.Param(nnx.initializers.lecun_normal()(k_in, (in_features, H)))
    self.input_bias = nnx.Param(jnp.zeros((H,)))
    if recurrent_init == "orthogonal":
      U = nnx.initializers.orthogonal()(k_rec, (H, H))
    elif recurrent_init == "identity":
      U = jnp.eye(H)
    else:
      U = jax.random.uniform(k_rec, (H, H), minval=-1, maxval=1) / jnp.sqrt(H)
    self.recurrent_kernel = nnx.Param(U)

  def recurrent_weights(self):
    return ((self.recurrent_kernel[...], None),)

  def step_parts(self, h: jax.Array, xp: jax.Array, matmul: MatMul) -> jax.Array:
    return self.activation(xp + matmul(0, h))


class LSTMCell(_Cell):
  """Long short-term memory (Hochreiter & Schmidhuber 1997; forget gate of
  Gers et al. 2000), gate order i, f, g, o:

      i_t = σ(W_i x_t + U_i h_{t-1} + b_i)      f_t = σ(W_f x_t + U_f h_{t-1} + b_f)
      g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)   o_t = σ(W_o x_t + U_o h_{t-1} + b_o)
      c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t           h_t = o_t ⊙ tanh(c_t)

  ``forget_bias`` initialises b_f (1.0 by default, Gers et al. 2000;
  Jozefowicz et al. 2015). The carry is ``(c, h)`` as in flax.
  """

  def __init__(
    self, in_features: int, hidden_size: int, *, forget_bias: float = 1.0, rngs: nnx.Rngs
  ):
    self.hidden_size = hidden_size
    k_in, k_rec = rngs.params(), rngs.params()
    H = hidden_size
    self.input_kernel = nnx.Param(nnx.initializers.lecun_normal()(k_in, (in_features, 4 * H)))
    self.input_bias = nnx.Param(jnp.zeros((4 * H,)).at[H : 2 * H].set(forget_bias))
    rec = [nnx.initializers.orthogonal()(k, (H, H)) for k in jax.random.split(k_rec, 4)]
    self.recurrent_kernel = nnx.Param(jnp.concatenate(rec, axis=1))

  def initialize_carry(self, batch_shape: tuple[int, ...]):
    z = jnp.zeros((*batch_shape, self.hidden_size), self.input_kernel[...].dtype)
    return (z, z)

  def recurrent_weights(self):
    return ((self.recurrent_kernel[...], None),)

  def step_parts(self, carry, xp: jax.Array, matmul: MatMul):
    c, h = carry
    H = self.hidden_size
    z = xp + matmul(0, h)  # (B, 4H)
    i = jax.nn.sigmoid(z[..., :H])
    f = jax.nn.sigmoid(z[..., H : 2 * H])
    g = jnp.tanh(z[..., 2 * H : 3 * H])
    o = jax.nn.sigmoid(z[..., 3 * H :])
    c = f * c + i * g
    return (c, o * jnp.tanh(c))

  def output(self, carry) -> jax.Array:
    return carry[1]


CELLS = ("elman", "gru", "lstm")


def make_cell(kind: str, in_features: int, hidden_size: int, *, rngs: nnx.Rngs, **options):
  """A cell by name: ``elman``, ``gru`` or ``lstm``; ``options`` go to it."""
  if kind not in CELLS:
    raise ValueError(f"unknown cell {kind!r}; allowed: {', '.join(CELLS)}")
  cls = {"elman": ElmanCell, "gru": GRUCell, "lstm": LSTMCell}[kind]
  return cls(in_features, hidden_size, rngs=rngs, **options)


# --------------------------------------------------------------------------
# Layers over time.

# Backend-aware defaults, chosen by `python -m experiments.benchmark --suite rnn`
# (the measurements: docs/performance.md). On CPU the fused backward wins at
# small batch and loses from B32, where autodiff's rank-B weight-gradient update
# per step is already an efficient matmul: "auto" picks fused up to
# `fused_max_batch` rows; hoisting the input projection and unrolling did not pay
# there. On GPU/TPU hoisting with unroll 8 is the faster autodiff scan; the fused
# backward has not been timed there.
BACKEND_DEFAULTS = {
  "cpu": {"hoist_input_projection": False, "unroll": 1, "backward": "fused", "fused_max_batch": 16},
  "gpu": {
    "hoist_input_projection": True,
    "unroll": 8,
    "backward": "autodiff",
    "fused_max_batch": None,
  },
  "tpu": {
    "hoist_input_projection": True,
    "unroll": 8,
    "backward": "autodiff",
    "fused_max_batch": None,
  },
}
BACKWARDS = ("autodiff", "fused")
# The config values of model.rnn_hoist_input_projection and model.rnn_backward.
HOIST_CHOICES = ("auto", "true", "false")
BACKWARD_CHOICES = ("auto", *BACKWARDS)


def options_for_backend(
  hoist_input_projection="auto",
  unroll="auto",
  backward="auto",
  backend: str | None = None,
  batch: int | None = None,
) -> dict:
  """Replaces each ``"auto"`` with the default for ``backend`` (default: the
  current JAX backend); an ``"auto"`` backward also depends on the ``batch``
  rows per step (fused only up to the backend's ``fused_max_batch``)."""
  defaults = BACKEND_DEFAULTS.get(backend or jax.default_backend(), BACKEND_DEFAULTS["gpu"])
  out = {"hoist_input_projection": hoist_input_projection, "unroll": unroll, "backward": backward}
  for key, value in out.items():
    if value == "auto" or value is None:
      out[key] = defaults[key]
  limit = defaults["fused_max_batch"]
  if (
    backward in ("auto", None)
    and out["backward"] == "fused"
    and limit is not None
    and batch is not None
    and batch > limit
  ):
    out["backward"] = "autodiff"
  if not isinstance(out["hoist_input_projection"], bool):
    raise ValueError(
      f"hoist_input_projection must be 'auto', True or False, got {hoist_input_projection!r}"
    )
  if not isinstance(out["unroll"], int) or out["unroll"] < 1:
    raise ValueError(f"unroll must be 'auto' or an int >= 1, got {unroll!r}")
  if out["backward"] not in BACKWARDS:
    raise ValueError(f"backward {backward!r}; allowed: auto, {', '.join(BACKWARDS)}")
  return out


# The config keys read by layer_options: every recurrent model reads them.
EXECUTION_KEYS = ("rnn_hoist_input_projection", "rnn_unroll", "rnn_backward")


def layer_options(model_config) -> dict:
  """``scan`` options from ``config.model`` (``rnn_hoist_input_projection``,
  ``rnn_unroll`` with 0 = auto, ``rnn_backward``)."""
  hoist_modes = dict(zip(HOIST_CHOICES, ("auto", True, False), strict=True))
  hoist = hoist_modes[model_config.rnn_hoist_input_projection]
  return {
    "hoist_input_projection": hoist,
    "unroll": model_config.rnn_unroll or "auto",
    "backward": model_config.rnn_backward,
  }


def static_layer_options(model_config) -> tuple:
  """:func:`layer_options` as a sorted tuple of items: hashable, so a module
  can keep it as static metadata; ``scan(..., **dict(options))``."""
  return tuple(sorted(layer_options(model_config).items()))


def scan(
  cell,
  xs: jax.Array,
  carry: Carry | None = None,
  mask: jax.Array | None = None,
  *,
  reverse: bool = False,
  hoist_input_projection: bool | str = "auto",
  unroll: int | str = "auto",
  backward: str = "auto",
) -> tuple[Carry, jax.Array]:
  """Runs ``cell`` over ``xs [B, T, I]`` with ``jax.lax.scan``.

  ``mask [B, T]`` (True = real step): at a padded step the carry is left
  unchanged, so with right padding the final carry is the state at each
  sequence's true length, and a ``reverse`` scan starts at the true end.
  Outputs at padded steps are zeros.

  Options (``"auto"``: :data:`BACKEND_DEFAULTS` for the current backend and,
  for ``backward``, this batch size):

  * ``hoist_input_projection``: compute ``x_t W + b`` for all steps as one
    ``(T·B, I) × (I, G)`` matmul before the scan instead of inside each step;
  * ``unroll``: steps per ``lax.scan`` iteration;
  * ``backward``: ``"autodiff"`` (JAX transposes the scan: the weight
    gradients are accumulated inside the loop, one rank-B update per step) or
    ``"fused"`` (a custom VJP that runs the reverse recurrence only for the
    state gradients and then forms every weight gradient as one matmul over
    all T·B rows, as cuDNN does). Both give the same gradients to float
    rounding.

  Returns ``(final_carry, outputs [B, T, H])``.
  """
  B, T = xs.shape[:2]
  opts = options_for_backend(hoist_input_projection, unroll, backward, batch=B)
  if opts["backward"] == "fused" and not isinstance(cell, _Cell):
    # The fused backward needs the built-in cells' weights (recurrent_weights);
    # a wrapper cell (e.g. the gradient probes' ProbedCell) runs under autodiff.
    if backward == "fused":
      raise ValueError(
        f"backward='fused' needs one of the built-in cells, got {type(cell).__name__}"
      )
    opts["backward"] = "autodiff"
  if carry is None:
    carry = cell.initialize_carry((B,))
  xs_t = jnp.swapaxes(xs, 0, 1)  # (T, B, I)
  # No mask: no masking ops in the loop at all.
  mask_t = None if mask is None else jnp.swapaxes(mask, 0, 1)  # (T, B)
  if opts["backward"] == "fused":
    carry, ys = _fused_scan(
      cell,
      xs_t,
      carry,
      mask_t,
      reverse=reverse,
      hoist=opts["hoist_input_projection"],
      unroll=opts["unroll"],
    )
    return carry, jnp.swapaxes(ys, 0, 1)  # (B, T, H)

  hoist = opts["hoist_input_projection"]
  if hoist:
    xs_t = cell.input_projection(xs_t)  # (T, B, G): one matmul for all steps

  def body(c, inputs):
    x, m = inputs
    xp = x if hoist else cell.input_projection(x)
    new = _masked(m, cell.step(c, xp), c)
    return new, _masked_output(m, cell.output(new))

  carry, ys = jax.lax.scan(body, carry, (xs_t, mask_t), reverse=reverse, unroll=opts["unroll"])
  return carry, jnp.swapaxes(ys, 0, 1)  # (B, T, H)


def _masked(m, new: Carry, old: Carry) -> Carry:
  """The new carry where ``m [B]`` is True, the old one at padded steps."""
  if m is None:
    return new
  return jax.tree.map(lambda n, o: jnp.where(m[:, None], n, o), new, old)


def _masked_output(m, h: jax.Array) -> jax.Array:
  return h if m is None else jnp.where(m[:, None], h, 0.0)


@jax.custom_vjp
def _replay(a: jax.Array, y: jax.Array, kernel: jax.Array) -> jax.Array:
  """Returns the saved product ``y = a @ kernel (+ b)`` without recomputing it;
  its VJP sends ``dy @ kernelᵀ`` to ``a`` and ``dy`` itself to ``y``."""
  del a, kernel
  return y


def _replay_fwd(a, y, kernel):
  del a
  return y, kernel


def _replay_bwd(kernel, dy):
  return dy @ kernel.T, dy, None


_replay.defvjp(_replay_fwd, _replay_bwd)


def _fused_scan(cell, xs_t, carry0, mask_t, *, reverse, hoist, unroll):
  """Time-major scan with the cuDNN-style backward pass (see :func:`scan`).

  Forward: the usual recurrence, saving per step the carry entering it, the
  projected input ``xp_t``, and every recurrent product ``y_k = a_k U_k + b_k``
  with its left operand ``a_k``. Backward: a reverse scan carrying only ∂L/∂carry;
  each step replays the cell's elementwise part from the saved products (no
  recurrent matmul is recomputed) and emits ∂L/∂xp_t and ∂L/∂y_k. Then

      ∂L/∂W = Σ_t x_tᵀ ∂L/∂xp_t,   ∂L/∂U_k = Σ_t a_{k,t}ᵀ ∂L/∂y_{k,t},
      ∂L/∂b = Σ_t 1ᵀ ∂L/∂xp_t,     ∂L/∂x_t = ∂L/∂xp_t Wᵀ

  each one ``(·, T·B) × (T·B, ·)`` matmul after the loop.
  """
  weights = cell.recurrent_weights()
  kernels = tuple(k for k, _ in weights)
  biases = tuple(b for _, b in weights)
  step_parts, output = cell.step_parts, cell.output
  n_products = len(weights)

  def forward(xs_t, W, b, kernels, biases, carry0, mask_t):
    xps_all = xs_t @ W + b if hoist else None  # (T, B, G)

    def body(c, inputs):
      x, m = inputs
      xp = x if hoist else x @ W + b  # (B, G)
      operands, products = [None] * n_products, [None] * n_products

      def matmul(k, a):
        y = a @ kernels[k]
        y = y if biases[k] is None else y + biases[k]
        operands[k], products[k] = a, y
        return y

      new = _masked(m, step_parts(c, xp, matmul), c)
      out = _masked_output(m, output(new))
      saved = (c, None if hoist else xp, tuple(operands), tuple(products))
      return new, (out, saved)

    inputs = (xps_all if hoist else xs_t, mask_t)
    final, (ys, saved) = jax.lax.scan(body, carry0, inputs, reverse=reverse, unroll=unroll)
    carries, xps, operands, products = saved
    xps = xps_all if hoist else xps
    return (final, ys), (carries, xps, operands, products)

  @jax.custom_vjp
  def recurrence(xs_t, W, b, kernels, biases, carry0, mask_t):
    return forward(xs_t, W, b, kernels, biases, carry0, mask_t)[0]

  def recurrence_fwd(xs_t, W, b, kernels, biases, carry0, mask_t):
    outs, saved = forward(xs_t, W, b, kernels, biases, carry0, mask_t)
    return outs, (xs_t, W, kernels, biases, mask_t, saved)

  def recurrence_bwd(res, cotangents):
    xs_t, W, kernels, biases, mask_t, (carries, xps, operands, products) = res
    d_final, d_ys = cotangents

    def local(c, xp, products_t, m):
      def matmul(k, a):
        return _replay(a, products_t[k], kernels[k])

      new = _masked(m, step_parts(c, xp, matmul), c)
      return new, _masked_output(m, output(new))

    def body(dc, inputs):
      d_y, c, xp, products_t, m = inputs
      _, vjp = jax.vjp(lambda c, xp, p: local(c, xp, p, m), c, xp, products_t)
      dc_prev, d_xp, d_products = vjp((dc, d_y))
      return dc_prev, (d_xp, d_products)

    d_carry0, (d_xps, d_products) = jax.lax.scan(
      body, d_final, (d_ys, carries, xps, products, mask_t), reverse=not reverse, unroll=unroll
    )
    # The weight gradients: one matmul each over all T·B rows.
    d_W = jnp.einsum("tbi,tbg->ig", xs_t, d_xps)
    d_b = d_xps.sum(axis=(0, 1))
    d_xs = jnp.einsum("tbg,ig->tbi", d_xps, W)
    d_kernels = tuple(
      jnp.einsum("tba,tbg->ag", a, dy) for a, dy in zip(operands, d_products, strict=True)
    )
    d_biases = tuple(
      None if bias is None else dy.sum(axis=(0, 1))
      for bias, dy in zip(biases, d_products, strict=True)
    )
    grads = (d_xs, d_W, d_b, d_kernels, d_biases, d_carry0)
    # Cotangents in each primal's dtype (e.g. bf16 inputs, f32 weights).
    return (*jax.tree.map(lambda g, dt: g.astype(dt), grads, primal_dtypes), None)

  recurrence.defvjp(recurrence_fwd, recurrence_bwd)
  args = (xs_t, cell.input_kernel[...], cell.input_bias[...], kernels, biases, carry0)
  primal_dtypes = jax.tree.map(lambda a: a.dtype, args)
  return recurrence(*args, mask_t)


def reverse_padded(xs: jax.Array, lengths: jax.Array) -> jax.Array:
  """Reverses each right-padded sequence within its length; padding stays at
  the end: ``[a b c 0 0] -> [c b a 0 0]``. ``xs [B, T, ...]``, ``lengths [B]``."""
  T = xs.shape[1]
  t = jnp.arange(T)[None, :]  # (1, T)
  idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # (B, T)
  idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
  return jnp.take_along_axis(xs, idx, axis=1)


def bidirectional(
  forward_cell,
  backward_cell,
  xs: jax.Array,
  mask: jax.Array | None = None,
  *,
  carries=(None, None),
  **options,
) -> tuple[tuple[Carry, Carry], jax.Array]:
  """Bidirectional RNN (Schuster & Paliwal 1997; the RNNsearch encoder of
  Bahdanau et al. 2014, sec. 3.2): h_j = [h→_j ; h←_j].

  The backward direction is a reverse scan under the same mask, so on
  right-padded input it starts at each sequence's true end (padded steps leave
  its initial state unchanged). Returns ``((forward_final, backward_final),
  outputs [B, T, 2H])``; ``backward_final`` is the state after reading x_1.
  """
  cf, yf = scan(forward_cell, xs, carries[0], mask, **options)
  cb, yb = scan(backward_cell, xs, carries[1], mask, reverse=True, **options)
  return (cf, cb), jnp.concatenate([yf, yb], axis=-1)  # (B, T, 2H)
