"""Recurrent seq2seq models: the step-by-step decoder equals the scanned
teacher-forced pass, padding is handled, and each model learns ``reverse``."""

import importlib.util
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, tiny_config
from flax import nnx

from attention_jax import config as config_lib
from attention_jax import models
from attention_jax import step as step_lib
from attention_jax import workdir as workdir_lib
from attention_jax.models import seq2seq

SRC = jnp.array([[5, 6, 7, 8, 9, 4], [4, 5, 6, 0, 0, 0], [9, 0, 0, 0, 0, 0]], jnp.int32)
TGT_IN = jnp.array([[1, 4, 9, 8, 7], [1, 6, 5, 4, 2], [1, 9, 2, 0, 0]], jnp.int32)
MASK = np.asarray(SRC != 0)

CASES = {
  "rnn_encdec": {},
  "seq2seq_lstm": {"model.num_layers": 2, "model.reverse_source": True},
  "rnnsearch": {"model.readout": "maxout", "model.attention_dim": 24},
  "luong": {
    "model.attention_score": "general",
    "model.num_layers": 2,
    "model.reverse_source": True,
  },
  "luong_dot": {"model.attention_score": "dot"},
  "luong_concat": {"model.attention_score": "concat", "model.input_feeding": False},
}


def _model(case, **more):
  name = case.split("_dot")[0].split("_concat")[0]
  return models.build_model(tiny_config(**{"model.name": name, **CASES[case], **more}), 10, 10)


@jax.jit
def _both_paths(model, src, tgt_in):
  """Teacher-forced scan, and decode_step called token by token."""
  logits, aux = model(src, tgt_in)
  memory = model.encode(src)
  state = model.init_decode_state(memory)
  step_logits, step_att = [], []
  for t in range(tgt_in.shape[1]):
    step_logit, state, a = model.decode_step(memory, state, tgt_in[:, t])
    step_logits.append(step_logit)
    step_att.append(a)
  step_att = None if step_att[0] is None else jnp.stack(step_att, 1)
  return logits, aux.get("attention"), jnp.stack(step_logits, 1), step_att


@pytest.mark.parametrize("case", sorted(CASES))
def test_decode_step_equals_scanned_call(case):
  model = _model(case)
  logits, att, step_logits, step_att = _both_paths(model, SRC, TGT_IN)
  assert logits.shape == (3, 5, 10)
  np.testing.assert_allclose(step_logits, logits, atol=1e-5)
  if case in ("rnn_encdec", "seq2seq_lstm"):
    assert att is None and step_att is None
    return
  assert att.shape == (3, 5, 6)
  np.testing.assert_allclose(step_att, att, atol=1e-6)
  np.testing.assert_allclose(np.asarray(att).sum(-1), 1.0, atol=1e-5)
  assert np.all(np.asarray(att)[~np.broadcast_to(MASK[:, None], att.shape)] == 0.0)


def test_reverse_padded():
  x = jnp.array([[1, 2, 3, 0], [4, 5, 0, 0], [6, 7, 8, 9]])
  got = seq2seq.reverse_padded(x, x != 0)
  np.testing.assert_array_equal(got, [[3, 2, 1, 0], [5, 4, 0, 0], [9, 8, 7, 6]])
  np.testing.assert_array_equal(seq2seq.reverse_padded(got, x != 0), x)


def test_rnnsearch_encoder_ignores_right_padding():
  """The backward GRU starts at each row's true end: more padding changes
  nothing, and a row's annotations equal those of the row without padding."""
  model = _model("rnnsearch")
  padded = model.encode(SRC)
  more = model.encode(jnp.pad(SRC, ((0, 0), (0, 3))))
  np.testing.assert_allclose(more["annotations"][:, :6], padded["annotations"], atol=1e-5)
  np.testing.assert_allclose(more["backward_first"], padded["backward_first"], atol=1e-5)
  np.testing.assert_array_equal(np.asarray(padded["annotations"])[~MASK], 0.0)
  alone = model.encode(SRC[1:2, :3])  # row 1 has length 3
  np.testing.assert_allclose(padded["annotations"][1, :3], alone["annotations"][0], atol=1e-5)


def test_luong_reverse_source_reports_weights_over_original_positions():
  """A model reading the source backwards equals the same parameters reading a
  reversed source; its weights are mapped back to the original positions."""
  rev = _model("luong", **{"model.num_layers": 1})
  fwd = _model("luong", **{"model.num_layers": 1, "model.reverse_source": False})
  nnx.update(fwd, nnx.state(rev))
  logits_r, aux_r = rev(SRC, TGT_IN)
  flipped = seq2seq.reverse_padded(SRC, SRC != 0)
  logits_f, aux_f = fwd(flipped, TGT_IN)
  np.testing.assert_allclose(logits_r, logits_f, atol=1e-5)
  np.testing.assert_allclose(
    aux_r["attention"],
    jax.vmap(seq2seq.reverse_padded, (1, None), 1)(aux_f["attention"], SRC != 0),
    atol=1e-6,
  )


# ---------------------------------------------------------------------------
# Each model, in its config's tiny mode, learns `reverse`.

CONFIGS = ["rnn_encdec", "seq2seq_lstm", "rnnsearch", "luong"]


def _load_config(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "configs", f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


@pytest.fixture(scope="module", params=CONFIGS)
def trained(request):
  """The config's tiny mode trained with the library's own train/eval steps
  (no checkpoints or writers: ``test_train`` covers those)."""
  config = _load_config(request.param, "tiny")
  config_lib.validate(config)
  run = workdir_lib.build_run(config)
  step = jax.jit(
    step_lib.make_train_step(run.graphdef, run.tx, run.schedule, config, run.objective)
  )
  it = run.task.train_iterator()
  state = run.state
  for _ in range(config.train.steps):
    state, _ = step(state, next(it))
  eval_set = run.task.eval_set("eval")
  final = step_lib.evaluate(
    jax.jit(step_lib.make_eval_step(run.graphdef, run.objective)),
    run.objective,
    state.params,
    eval_set,
    config.eval.batch_size,
  )
  model = nnx.merge(run.graphdef, state.params)
  return request.param, config, model, eval_set, final


def test_tiny_config_learns_reverse(trained):
  name, config, _, _, final = trained
  assert config.model.name == name and config.data.task == "reverse"
  assert final["sequence_accuracy"] >= 0.95, final
  assert final["token_accuracy"] >= 0.98, final


def test_trained_attention_aligns_antidiagonally(trained):
  """On `reverse`, target token t comes from source position L−1−t: the
  trained attention's argmax should point there."""
  name, _, model, batch, _ = trained
  _, aux = jax.jit(lambda m, s, t: m(s, t))(model, batch["src"], batch["tgt_in"])
  if name not in ("rnnsearch", "luong"):  # the bottleneck models have none
    assert "attention" not in aux
    return
  att = np.asarray(aux["attention"])
  lengths = (batch["src"] != 0).sum(1)
  hits = total = 0
  for i, L in enumerate(lengths):
    for t in range(L):
      hits += att[i, t].argmax() == L - 1 - t
      total += 1
  assert hits / total >= 0.9, hits / total


def test_tiny_modes_are_valid_and_unknown_arg_fails():
  for name in CONFIGS:
    config_lib.validate(_load_config(name, "tiny"))
    with pytest.raises(ValueError, match=f"configs/{name}.py: unknown argument 'big'"):
      _load_config(name, "big")


@pytest.mark.parametrize("name", ["rnn_encdec", "seq2seq_lstm", "rnnsearch", "luong"])
def test_rnn_execution_keys_reach_the_scans(name):
  """``model.rnn_backward`` (and the other ``model.rnn_*`` keys) steer every
  recurrent layer of the model: ``fused`` puts the scan's custom VJP
  (``rnn._fused_scan``'s ``recurrence``) in the loss jaxpr, ``autodiff`` does
  not (the embedding lookup's own custom VJP is there either way), and both
  give the same loss and gradients."""
  results = {}
  for backward in ("fused", "autodiff"):
    model = _model(
      name, **{"model.rnn_backward": backward, "model.rnn_hoist_input_projection": "true"}
    )
    graphdef, params = nnx.split(model)

    def loss(p, graphdef=graphdef):
      logits, _ = nnx.merge(graphdef, p)(SRC, TGT_IN)
      return jnp.mean(logits**2)

    jaxpr = str(jax.make_jaxpr(loss)(params))
    fused = re.search(r"custom_vjp_call\[\s*name=recurrence\b", jaxpr) is not None
    assert fused == (backward == "fused"), backward
    results[backward] = jax.jit(jax.value_and_grad(loss))(params)
  (l_f, g_f), (l_a, g_a) = results["fused"], results["autodiff"]
  np.testing.assert_allclose(l_f, l_a, rtol=1e-5)
  for a, b in zip(jax.tree.leaves(g_f), jax.tree.leaves(g_a), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def _dots_in_scans(jaxpr, inside=False, out=None):
  """Last dimension of the left operand of every dot_general inside a scan."""
  out = [] if out is None else out
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general" and inside:
      out.append(eqn.invars[0].aval.shape[-1])
    for value in eqn.params.values():
      for sub in value if isinstance(value, (tuple, list)) else (value,):
        sub = getattr(sub, "jaxpr", sub)
        if hasattr(sub, "eqns"):
          _dots_in_scans(sub, inside or eqn.primitive.name == "scan", out)
  return out


@pytest.mark.parametrize(
  "case,feature_widths",
  [
    ("rnnsearch", (16, 16 + 64)),  # E; the decoder's [E y; c] (2H = 64)
    ("luong", (16, 16 + 32)),
  ],
)  # E; the first layer's [E y; h̃] (H = 32)
def test_attention_decoders_take_the_rnn_execution_keys(case, feature_widths):
  """``model.rnn_hoist_input_projection``/``rnn_unroll`` reach the attention
  decoders' scans: hoisted, no matmul inside any scan reads the embeddings;
  the scans carry the unroll; loss and gradients equal the plain scan's."""
  results = {}
  for hoist, unroll in (("true", 2), ("false", 1)):
    model = _model(
      case,
      **{
        "model.rnn_hoist_input_projection": hoist,
        "model.rnn_unroll": unroll,
        "model.rnn_backward": "autodiff",
      },
    )
    graphdef, params = nnx.split(model)

    def loss(p, graphdef=graphdef):
      logits, _ = nnx.merge(graphdef, p)(SRC, TGT_IN)
      return jnp.mean(logits**2)

    closed = jax.make_jaxpr(loss)(params)
    widths = _dots_in_scans(closed.jaxpr)
    reads_embeddings = any(w in feature_widths for w in widths)
    assert reads_embeddings == (hoist == "false"), (hoist, widths)
    assert f"unroll={unroll}" in str(closed)
    results[hoist] = jax.jit(jax.value_and_grad(loss))(params)
  (l_h, g_h), (l_p, g_p) = results["true"], results["false"]
  np.testing.assert_allclose(l_h, l_p, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g_h), jax.tree.leaves(g_p), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
