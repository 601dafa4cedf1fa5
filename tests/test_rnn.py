"""Recurrent cells and layers against independent references.

Flax's own cells with copied parameters, a numpy GRU written from Cho et al.
2014 eqs. 5-8, a Python loop over the cell, per-sequence truncation for masks,
autodiff and float64 finite differences for the fused backward pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attention_jax import rnn

B, T, IN, H = 3, 7, 4, 5
LENGTHS = np.array([7, 4, 1])
CELL_CASES = [
  ("elman", {}),
  ("elman", {"activation": "relu", "recurrent_init": "identity"}),
  ("gru", {}),
  ("gru", {"reset_after": True}),
  ("lstm", {"forget_bias": 0.5}),
]
CASE_IDS = ["elman", "irnn", "gru_cho", "gru_reset_after", "lstm"]


def _inputs(seed=0, shape=(B, T, IN)):
  return jax.random.normal(jax.random.key(seed), shape)


def _mask(lengths=LENGTHS, T=T):
  return jnp.arange(T)[None, :] < jnp.asarray(lengths)[:, None]


def _cell(kind, options, seed=0, in_features=IN):
  """A cell with every parameter random (biases too), so copies are tested."""
  cell = rnn.make_cell(kind, in_features, H, rngs=nnx.Rngs(seed), **options)
  key = jax.random.key(100 + seed)
  for name in ("input_bias", "recurrent_bias"):
    p = getattr(cell, name, None)
    if p is not None:
      key, sub = jax.random.split(key)
      p[...] = 0.5 * jax.random.normal(sub, p[...].shape)
  return cell


def _random_carry(cell, seed=1):
  c = cell.initialize_carry((B,))
  keys = jax.random.split(jax.random.key(seed), len(jax.tree.leaves(c)))
  leaves = [
    jax.random.normal(k, leaf.shape) for k, leaf in zip(keys, jax.tree.leaves(c), strict=True)
  ]
  return jax.tree.unflatten(jax.tree.structure(c), leaves)


def _run_cell(cell, carry, xs):
  """Python loop over a Flax-style ``cell(carry, x) -> (carry, h)``."""
  outs = []
  for t in range(xs.shape[1]):
    carry, h = cell(carry, xs[:, t])
    outs.append(h)
  return carry, jnp.stack(outs, axis=1)


# ----------------------------------------------------------------- cells ---


def _compare_with_flax(ours, theirs, carry):
  xs = _inputs(3)
  c1, y1 = _run_cell(ours, carry, xs)
  c2, y2 = _run_cell(theirs, carry, xs)
  np.testing.assert_allclose(y1, y2, atol=1e-5, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(c1), jax.tree.leaves(c2), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_elman_matches_flax_simple_cell(activation):
  ours = _cell("elman", {"activation": activation})
  theirs = nnx.SimpleCell(
    IN, H, rngs=nnx.Rngs(9), activation_fn={"tanh": jnp.tanh, "relu": nnx.relu}[activation]
  )
  theirs.dense_i.kernel[...] = ours.input_kernel[...]
  theirs.dense_i.bias[...] = ours.input_bias[...]
  theirs.dense_h.kernel[...] = ours.recurrent_kernel[...]
  _compare_with_flax(ours, theirs, _random_carry(ours))


def test_gru_reset_after_matches_flax_gru_cell():
  ours = _cell("gru", {"reset_after": True})
  b_rec = ours.recurrent_bias[...]
  ours.recurrent_bias[...] = b_rec.at[2 * H :].set(0.0)  # flax has no b_hn
  theirs = nnx.GRUCell(IN, H, rngs=nnx.Rngs(9))
  theirs.dense_i.kernel[...] = ours.input_kernel[...]
  # flax's input bias holds b_ir + b_hr and b_iz + b_hz (they only add).
  theirs.dense_i.bias[...] = ours.input_bias[...] + ours.recurrent_bias[...]
  theirs.dense_h.kernel[...] = ours.recurrent_kernel[...]
  _compare_with_flax(ours, theirs, _random_carry(ours))


@pytest.mark.parametrize("flax_cell", ["OptimizedLSTMCell", "LSTMCell"])
def test_lstm_matches_flax(flax_cell):
  ours = _cell("lstm", {"forget_bias": 1.0})
  Wi, b, Wh = (ours.input_kernel[...], ours.input_bias[...], ours.recurrent_kernel[...])
  theirs = getattr(nnx, flax_cell)(IN, H, rngs=nnx.Rngs(9))
  if flax_cell == "OptimizedLSTMCell":
    theirs.dense_i.kernel[...] = Wi
    theirs.dense_h.kernel[...] = Wh
    theirs.dense_h.bias[...] = b
  else:  # one Linear per gate, order i, f, g, o
    for g, (di, dh) in enumerate([("ii", "hi"), ("if_", "hf"), ("ig", "hg"), ("io", "ho")]):
      sl = slice(g * H, (g + 1) * H)
      getattr(theirs, di).kernel[...] = Wi[:, sl]
      getattr(theirs, dh).kernel[...] = Wh[:, sl]
      getattr(theirs, dh).bias[...] = b[sl]
  _compare_with_flax(ours, theirs, _random_carry(ours))


def test_lstm_forget_bias_and_elman_inits():
  lstm = rnn.LSTMCell(IN, H, forget_bias=2.5, rngs=nnx.Rngs(0))
  b = np.asarray(lstm.input_bias[...])
  assert np.all(b[H : 2 * H] == 2.5) and np.all(np.delete(b, np.s_[H : 2 * H]) == 0)
  assert np.all(rnn.LSTMCell(IN, H, rngs=nnx.Rngs(0)).input_bias[...][H : 2 * H] == 1.0)
  U = np.asarray(
    rnn.ElmanCell(IN, H, recurrent_init="orthogonal", rngs=nnx.Rngs(0)).recurrent_kernel[...]
  )
  np.testing.assert_allclose(U.T @ U, np.eye(H), atol=1e-5)
  U = rnn.ElmanCell(IN, H, recurrent_init="identity", rngs=nnx.Rngs(0))
  np.testing.assert_array_equal(U.recurrent_kernel[...], np.eye(H))
  U = np.asarray(
    rnn.ElmanCell(IN, H, recurrent_init="uniform", rngs=nnx.Rngs(0)).recurrent_kernel[...]
  )
  assert np.abs(U).max() <= 1 / np.sqrt(H) and np.abs(U).max() > 0.5 / np.sqrt(H)
  with pytest.raises(ValueError, match="recurrent_init 'xavier'"):
    rnn.ElmanCell(IN, H, recurrent_init="xavier", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="activation 'sigmoid'"):
    rnn.ElmanCell(IN, H, activation="sigmoid", rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="unknown cell 'rnn'"):
    rnn.make_cell("rnn", IN, H, rngs=nnx.Rngs(0))


def test_gru_cho_form_matches_numpy_equations():
  """Cho et al. 2014 eqs. 5-8, one unit-gate matrix each, in float64 numpy."""
  ours = _cell("gru", {})
  Wi = np.asarray(ours.input_kernel[...], np.float64)
  bi = np.asarray(ours.input_bias[...], np.float64)
  U = np.asarray(ours.recurrent_kernel[...], np.float64)
  W_r, W_z, W = Wi[:, :H], Wi[:, H : 2 * H], Wi[:, 2 * H :]
  b_r, b_z, b = bi[:H], bi[H : 2 * H], bi[2 * H :]
  U_r, U_z, U_n = U[:, :H], U[:, H : 2 * H], U[:, 2 * H :]

  def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))

  xs = np.asarray(_inputs(3), np.float64)
  h = np.asarray(_random_carry(ours), np.float64)
  carry = jnp.asarray(h, jnp.float32)
  for t in range(T):
    x = xs[:, t]
    r = sigmoid(x @ W_r + h @ U_r + b_r)  # eq. 5
    z = sigmoid(x @ W_z + h @ U_z + b_z)  # eq. 6
    h_tilde = np.tanh(x @ W + (r * h) @ U_n + b)  # eq. 8
    h = z * h + (1 - z) * h_tilde  # eq. 7
    carry, out = ours(carry, jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(out, h, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- layers ---

SCAN_OPTS = {
  "plain": dict(backward="autodiff", hoist_input_projection=False, unroll=1),
  "hoist_u3": dict(backward="autodiff", hoist_input_projection=True, unroll=3),
  "fused": dict(backward="fused", hoist_input_projection=False, unroll=1),
  "fused_hoist_u2": dict(backward="fused", hoist_input_projection=True, unroll=2),
}


@pytest.mark.parametrize(
  "kind,options,opts",
  [
    *[(k, o, "plain") for k, o in CELL_CASES],
    *[(k, o, "fused_hoist_u2") for k, o in CELL_CASES],
    ("lstm", {}, "hoist_u3"),
    ("gru", {}, "fused"),
  ],
  ids=[
    *[f"{c}-plain" for c in CASE_IDS],
    *[f"{c}-fused_hoist_u2" for c in CASE_IDS],
    "lstm-hoist_u3",
    "gru_cho-fused",
  ],
)
def test_scan_equals_python_loop(kind, options, opts):
  scan_opts = SCAN_OPTS[opts]
  cell = _cell(kind, options)
  carry0 = _random_carry(cell)
  xs = _inputs()
  want_c, want_y = _run_cell(cell, carry0, xs)
  got_c, got_y = rnn.scan(cell, xs, carry0, **scan_opts)
  np.testing.assert_allclose(got_y, want_y, atol=1e-5, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(got_c), jax.tree.leaves(want_c), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
  # reverse: the loop over the time-reversed input, outputs back in order
  want_c, want_y = _run_cell(cell, carry0, xs[:, ::-1])
  got_c, got_y = rnn.scan(cell, xs, carry0, reverse=True, **scan_opts)
  np.testing.assert_allclose(got_y, want_y[:, ::-1], atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(cell.output(got_c), cell.output(want_c), atol=1e-5)


@pytest.mark.parametrize(
  "kind,options,backward",
  [
    *[(k, o, "fused") for k, o in CELL_CASES[2:]],
    ("lstm", {}, "autodiff"),
    ("gru", {}, "autodiff"),
  ],
  ids=[*[f"{c}-fused" for c in CASE_IDS[2:]], "lstm-autodiff", "gru_cho-autodiff"],
)
def test_masked_final_state_is_state_at_true_length(kind, options, backward):
  cell = _cell(kind, options)
  xs = _inputs()
  final, ys = rnn.scan(cell, xs, mask=_mask(), backward=backward)
  for b, n in enumerate(LENGTHS):
    want_c, want_y = _run_cell(cell, cell.initialize_carry((1,)), xs[b : b + 1, :n])
    np.testing.assert_allclose(cell.output(final)[b], cell.output(want_c)[0], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(ys[b, :n], want_y[0], atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(ys[b, n:], 0.0)  # padded outputs


@pytest.mark.parametrize(
  "kind,options", [CELL_CASES[3], CELL_CASES[4]], ids=["gru_reset_after", "lstm"]
)
def test_bidirectional_equals_two_independent_passes(kind, options):
  fwd, bwd = _cell(kind, options, seed=0), _cell(kind, options, seed=1)
  xs = _inputs()
  (cf, cb), ys = rnn.bidirectional(fwd, bwd, xs, _mask())
  assert ys.shape == (B, T, 2 * H)
  for b, n in enumerate(LENGTHS):
    x = xs[b : b + 1, :n]  # the true sequence
    want_cf, want_f = _run_cell(fwd, fwd.initialize_carry((1,)), x)
    want_cb, want_b = _run_cell(bwd, bwd.initialize_carry((1,)), x[:, ::-1])
    np.testing.assert_allclose(ys[b, :n, :H], want_f[0], atol=1e-5)
    np.testing.assert_allclose(ys[b, :n, H:], want_b[0, ::-1], atol=1e-5)
    np.testing.assert_allclose(fwd.output(cf)[b], fwd.output(want_cf)[0], atol=1e-5)
    np.testing.assert_allclose(bwd.output(cb)[b], bwd.output(want_cb)[0], atol=1e-5)
    np.testing.assert_array_equal(ys[b, n:], 0.0)


def test_reverse_padded():
  xs = jnp.array([[1, 0, 0], [2, 3, 0], [4, 5, 6]])[..., None]
  got = rnn.reverse_padded(xs, jnp.array([1, 2, 3]))[..., 0]
  np.testing.assert_array_equal(got, [[1, 0, 0], [3, 2, 0], [6, 5, 4]])


def test_stack_scan_is_layer_by_layer_with_dropout_between_only():
  """``seq2seq.stack_scan`` (the models' stacked RNN) equals one scan per
  layer, each layer reading the one below; dropout only with an rng, only
  between layers."""
  from attention_jax.models import seq2seq

  cells = [
    rnn.make_cell("lstm", IN, H, rngs=nnx.Rngs(0)),
    rnn.make_cell("lstm", H, H, rngs=nnx.Rngs(1)),
  ]
  xs, mask = _inputs(), _mask()
  finals, ys = seq2seq.stack_scan(cells, xs, mask)
  c1, y1 = rnn.scan(cells[0], xs, None, mask)
  c2, y2 = rnn.scan(cells[1], y1, None, mask)
  np.testing.assert_allclose(ys, y2, atol=1e-6)
  for got, want in zip(jax.tree.leaves(finals), jax.tree.leaves([c1, c2]), strict=True):
    np.testing.assert_allclose(got, want, atol=1e-6)
  _, dropped = seq2seq.stack_scan(cells, xs, mask, dropout_rate=0.5, rng=jax.random.key(0))
  assert not np.allclose(dropped, ys)
  _, one = seq2seq.stack_scan(cells[:1], xs, mask, dropout_rate=0.5, rng=jax.random.key(0))
  np.testing.assert_array_equal(one, y1)


def _defaults(backend):
  d = rnn.BACKEND_DEFAULTS[backend]
  return {k: d[k] for k in ("hoist_input_projection", "unroll", "backward")}


def test_resolve_options():
  cpu = rnn.resolve_options(backend="cpu")
  assert cpu == _defaults("cpu")
  # CPU: fused backward up to 16 rows per step, autodiff above (measured);
  # an explicit choice is kept whatever the batch.
  assert rnn.resolve_options(backend="cpu", batch=16)["backward"] == "fused"
  assert rnn.resolve_options(backend="cpu", batch=17)["backward"] == "autodiff"
  assert rnn.resolve_options(backward="fused", backend="cpu", batch=64)["backward"] == "fused"
  assert rnn.resolve_options(backend="gpu", batch=4)["backward"] == "autodiff"
  assert rnn.resolve_options(backend="gpu")["unroll"] == 8
  assert rnn.resolve_options(unroll=2, backward="autodiff", backend="gpu") == {
    "hoist_input_projection": True,
    "unroll": 2,
    "backward": "autodiff",
  }
  with pytest.raises(ValueError, match="backward 'cudnn'"):
    rnn.resolve_options(backward="cudnn")
  with pytest.raises(ValueError, match="unroll must be"):
    rnn.resolve_options(unroll=0)


# --------------------------------------------------------- fused backward ---


def _loss_fn(cell, reverse, masked, backward, hoist=False):
  """A loss that uses every output, the final carry and the initial carry."""
  gdef, params = nnx.split(cell)
  mask = _mask() if masked else None
  weights = jnp.arange(1, T + 1, dtype=jnp.float32)[None, :, None] / T

  def loss(params, xs, carry0):
    c = nnx.merge(gdef, params)
    final, ys = rnn.scan(
      c, xs, carry0, mask, reverse=reverse, backward=backward, hoist_input_projection=hoist
    )
    return jnp.sum(weights.astype(ys.dtype) * ys**2) + sum(
      jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(final)
    )

  return loss, params


@pytest.mark.parametrize("kind,options", CELL_CASES, ids=CASE_IDS)
def test_fused_backward_equals_autodiff(kind, options):
  cell = _cell(kind, options)
  xs, carry0 = _inputs(), _random_carry(cell)
  for reverse, masked, hoist in [(False, True, False), (True, True, True)]:
    grads = {}
    for backward in ("autodiff", "fused"):
      loss, params = _loss_fn(cell, reverse, masked, backward, hoist)
      grads[backward] = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)
    flat_a = jax.tree.leaves(grads["autodiff"])
    flat_f = jax.tree.leaves(grads["fused"])
    assert len(flat_a) == len(flat_f) >= 5
    for a, f in zip(flat_a, flat_f, strict=True):
      assert np.abs(a).max() > 0
      np.testing.assert_allclose(f, a, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
  "kind,options", [CELL_CASES[i] for i in (2, 4)], ids=[CASE_IDS[i] for i in (2, 4)]
)
def test_fused_backward_matches_finite_differences_float64(kind, options):
  with jax.enable_x64(True):
    cell = _cell(kind, options)
    loss, params = _loss_fn(cell, reverse=False, masked=True, backward="fused")

    def to64(t):
      return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), t)

    params, xs = to64(params), to64(_inputs())
    carry0 = to64(_random_carry(cell))
    args = (params, xs, carry0)
    grads = jax.grad(loss, argnums=(0, 1, 2))(*args)
    leaves, treedef = jax.tree.flatten(args)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    direction = jax.tree.unflatten(
      treedef,
      [jax.random.normal(k, leaf.shape, jnp.float64) for k, leaf in zip(keys, leaves, strict=True)],
    )
    eps = 1e-6
    plus = jax.tree.map(lambda a, d: a + eps * d, args, direction)
    minus = jax.tree.map(lambda a, d: a - eps * d, args, direction)
    numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
    analytic = sum(
      jnp.vdot(g, d)
      for g, d in zip(jax.tree.leaves(grads), jax.tree.leaves(direction), strict=True)
    )
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6)
    assert abs(float(numeric)) > 1e-3


def test_config_keys_reach_scan_options():
  from conftest import tiny_config

  from attention_jax import config as config_lib

  c = tiny_config(
    **{
      "model.rnn_unroll": 4,
      "model.rnn_backward": "autodiff",
      "model.rnn_hoist_input_projection": "true",
    }
  )
  config_lib.validate(c)
  assert rnn.layer_options(c.model) == {
    "hoist_input_projection": True,
    "unroll": 4,
    "backward": "autodiff",
  }
  assert rnn.resolve_options(**rnn.layer_options(tiny_config().model), backend="cpu") == _defaults(
    "cpu"
  )
  for key, bad in [
    ("model.rnn_backward", "cudnn"),
    ("model.rnn_hoist_input_projection", "yes"),
    ("model.rnn_unroll", -1),
  ]:
    with pytest.raises(config_lib.ConfigError, match=key.replace(".", r"\.")):
      config_lib.validate(tiny_config(**{key: bad}))
