"""Mixed precision: every matrix product of every model's bf16 train step takes
bfloat16 operands (read from the lowered StableHLO), float32 keeps float32,
parameters and optimizer state stay float32, bf16 runs learn, and ``auto``
attention picks cuDNN for a bf16 model on a (faked) GPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config
from flax import nnx

from attention_jax import attention, models, precision, train
from attention_jax import step as step_lib
from attention_jax import workdir as workdir_lib

# (model, config overrides): every model, and the options that change which
# products run (fused/autodiff/hoisted scans, attention scores, readouts, ties).
CASES = [
  ("rnn_encdec", {"model.readout": "maxout"}),
  ("rnn_encdec", {"model.rnn_backward": "autodiff", "model.rnn_hoist_input_projection": "true"}),
  ("seq2seq_lstm", {"model.num_layers": 2}),
  ("rnnsearch", {"model.rnn_backward": "fused"}),
  ("rnnsearch", {"model.rnn_backward": "autodiff", "model.gru_reset_after": True}),
  ("luong", {"model.attention_score": "concat"}),
  ("luong", {"model.attention_score": "dot", "model.reverse_source": True}),
  ("transformer", {"train.label_smoothing": 0.1}),
  (
    "transformer",
    {"model.tie_embeddings": False, "model.pre_ln": False, "model.attention_impl": "xla"},
  ),
  ("gpt", {"model.dropout": 0.1}),
  ("sequence_rnn", {"data.task": "adding", "model.cell": "lstm"}),
  (
    "sequence_rnn",
    {
      "data.task": "copy_memory",
      "model.cell": "elman",
      "model.pooling": "attention",
      "data.length": 12,
    },
  ),
  (
    "sequence_rnn",
    {
      "data.task": "temporal_order",
      "model.cell": "gru",
      "model.pooling": "attention",
      "data.length": 12,
    },
  ),
]


def _config(name, overrides, dtype, text_file):
  c = tiny_config(**{"model.name": name, "train.compute_dtype": dtype})
  if name in ("transformer", "gpt"):
    c.model.num_heads, c.model.max_positions = 2, 16
  if name == "gpt":
    c.data.task, c.data.train_path, c.data.max_length = "text", text_file, 8
  if name == "sequence_rnn":
    c.data.length = 8
  for key, value in overrides.items():
    section, leaf = key.split(".")
    c[section][leaf] = value
  return c


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("lm") / "t.txt"
  path.write_text("the cat sees a dog and the dog runs.\n" * 40, encoding="utf-8")
  return str(path)


def _lowered_step(config):
  run = workdir_lib.build_run(config)
  batch = next(run.task.train_iterator())
  step = step_lib.make_train_step(run.graphdef, run.tx, run.schedule, config, run.objective)
  return step, run.state, batch


@pytest.mark.parametrize(
  "name,overrides", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
def test_bf16_train_step_has_only_bf16_products(name, overrides, text_file):
  step, state, batch = _lowered_step(_config(name, overrides, "bfloat16", text_file))
  text = precision.lowered_text(step, state, batch)
  dots = precision.dot_operand_dtypes(text)
  assert len(dots) >= 3, dots
  assert precision.wide_dots(text, jnp.bfloat16) == [], precision.count_dots(text)
  assert precision.step_dtype(text) == "bfloat16"
  # Parameters and optimizer state stay float32 across the step.
  new_state, _ = jax.eval_shape(step, state, batch)
  floats = {
    x.dtype
    for x in jax.tree.leaves((new_state.params, new_state.opt_state))
    if jnp.issubdtype(x.dtype, jnp.floating)
  }
  assert floats == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize(
  "name,overrides",
  [CASES[0], CASES[5], CASES[7], CASES[9], CASES[11]],
  ids=lambda v: v if isinstance(v, str) else "",
)
def test_float32_step_keeps_float32(name, overrides, text_file):
  step, state, batch = _lowered_step(_config(name, overrides, "float32", text_file))
  text = precision.lowered_text(step, state, batch)
  assert precision.step_dtype(text) == "float32", precision.count_dots(text)


def test_dot_parser_reads_hlo_dumps_as_well():
  hlo = """
  %p.1 = bf16[4,8]{1,0} parameter(0)
  %c.2 = f32[8,2]{1,0} constant({...})
  %dot.3 = f32[4,2]{1,0} dot(bf16[4,8]{1,0} %p.1, f32[8,2]{1,0} %c.2), lhs_contracting_dims={1}
  %dot.4 = bf16[4,4]{1,0} dot(%p.1, %p.1), lhs_contracting_dims={1}, rhs_contracting_dims={1}
  """
  assert precision.dot_operand_dtypes(hlo) == [("bf16", "f32"), ("bf16", "bf16")]
  assert precision.step_dtype(hlo) == "mixed"
  mlir = (
    "%3 = stablehlo.dot_general %1, %2, contracting_dims = [1] x [0] : "
    "(tensor<4x8xbf16>, tensor<8x2xf32>) -> tensor<4x2xf32>"
  )
  assert precision.dot_operand_dtypes(mlir) == [("bf16", "f32")]


def _jit_logits(graphdef, config, src, tgt):
  """The logits as a jitted function of the parameters, in ``config``'s dtype."""
  return jax.jit(lambda p: step_lib.merge_for_compute(graphdef, p, config)(src, tgt)[0])


def test_bf16_forward_is_close_to_float32(text_file):
  """Same parameters, computed in bf16 and float32: logits agree to bf16
  rounding (a wrong cast — e.g. positions dropped — would not)."""
  for name in ("transformer", "rnnsearch"):
    config = _config(name, {}, "float32", text_file)
    model = models.build_model(config, 9, 9)
    graphdef, params = nnx.split(model)
    src = jnp.array([[4, 5, 6, 7, 0], [8, 4, 5, 0, 0]])
    tgt = jnp.array([[1, 7, 6, 5, 4], [1, 5, 4, 8, 0]])
    out = {}
    for dtype in ("float32", "bfloat16"):
      config.train.compute_dtype = dtype
      logits = _jit_logits(graphdef, config, src, tgt)(params)
      assert logits.dtype == jnp.dtype(dtype)
      out[dtype] = np.asarray(logits, np.float32)
    scale = np.abs(out["float32"]).max()
    err = np.abs(out["bfloat16"] - out["float32"]).max() / scale
    assert 1e-5 < err < 5e-2, (name, err)


def test_auto_attention_picks_cudnn_for_a_bf16_model_on_a_gpu(monkeypatch, text_file):
  """With the backend faked as a GPU, the bf16 Transformer's self- and
  cross-attention go to ``jax.nn.dot_product_attention(implementation="cudnn")``
  with bf16 operands; in float32 they stay on the einsum path."""
  calls = []
  real = jax.nn.dot_product_attention

  def recorder(q, k, v, *args, implementation=None, **kwargs):
    calls.append((implementation, q.dtype, k.dtype))
    return real(q, k, v, *args, implementation="xla", **kwargs)

  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  monkeypatch.setattr(jax.nn, "dot_product_attention", recorder)
  config = _config(
    "transformer", {"model.num_heads": 2, "model.hidden_size": 32}, "bfloat16", text_file
  )
  graphdef, params = nnx.split(models.build_model(config, 9, 9))
  src = jnp.array([[4, 5, 6, 0]])
  tgt = jnp.array([[1, 6, 5, 4]])

  def forward(p, c):
    return step_lib.merge_for_compute(graphdef, p, c)(src, tgt)

  jax.eval_shape(lambda p: forward(p, config), params)
  # encoder self, decoder self; cross-attention returns weights -> einsum
  assert calls and all(c == ("cudnn", jnp.bfloat16, jnp.bfloat16) for c in calls), calls
  assert attention.resolve_implementation("auto", jnp.bfloat16, 16) == "cudnn"
  calls.clear()
  config.train.compute_dtype = "float32"
  jax.eval_shape(lambda p: forward(p, config), params)
  assert calls == []
  assert attention.resolve_implementation("auto", jnp.float32, 16) == "einsum"


def test_bf16_transformer_learns(tmp_path):
  """A bf16 run of a tiny Transformer learns the reverse task (chance: 1/6)
  with float32 parameters in its checkpoint. (The RNN encoder–decoder's bf16
  run is compared with float32 in test_scale.py.)"""
  config = tiny_config(
    **{
      "model.name": "transformer",
      "model.num_heads": 2,
      "model.max_positions": 24,
      "train.compute_dtype": "bfloat16",
      "train.steps": 150,
      "train.learning_rate": 1e-2,
      "eval.every_steps": 150,
      "checkpoint.every_steps": 150,
      "train.log_every_steps": 50,
    }
  )
  final = train.train_and_evaluate(config, str(tmp_path))
  assert final["token_accuracy"] > 0.6, final
  run = workdir_lib.load(str(tmp_path))
  assert {x.dtype for x in jax.tree.leaves(run.state.params)} == {jnp.dtype(jnp.float32)}


def test_embedding_gradient_accumulates_in_float32():
  """A token repeated 4,096 times: the bf16 lookup's gradient equals the
  float32 sum rounded once (autodiff's bf16 scatter-add stalls at 256)."""
  from attention_jax.models.layers import take_rows

  ids = jnp.zeros((4096,), jnp.int32).at[::2].set(3)
  g = jax.random.uniform(jax.random.PRNGKey(0), (4096, 4)).astype(jnp.bfloat16)
  want = np.zeros((5, 4), np.float32)
  np.add.at(want, np.asarray(ids), np.asarray(g, np.float32))
  for dtype in (jnp.bfloat16, jnp.float32):
    table = jnp.ones((5, 4), dtype)
    grad = jax.jit(
      jax.grad(
        lambda t, dtype=dtype: (take_rows(t, ids) * g.astype(dtype)).astype(jnp.float32).sum()
      )
    )(table)
    assert grad.dtype == dtype
    np.testing.assert_allclose(
      np.asarray(grad, np.float32), want, rtol=1e-2 if dtype == jnp.bfloat16 else 1e-5
    )
    np.testing.assert_array_equal(np.asarray(take_rows(table, ids)), np.ones((4096, 4)))
