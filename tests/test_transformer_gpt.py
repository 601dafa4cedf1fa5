"""Transformer and GPT: causality, KV-cache decoding, the text task, training, generate."""

import importlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT
from flax import nnx

from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import evaluation, generate, model_setup, train, validation, writers
from attention_jax.data import text as text_task
from attention_jax.testing import decode_in_steps


def _config(name, arg="tiny", **overrides):
  c = importlib.import_module(f"configs.{name}").get_config(arg)
  for key, value in overrides.items():
    section, leaf = key.split(".")
    c[section][leaf] = value
  return c


def _text(n_lines=300, seed=0):
  rng = np.random.default_rng(seed)
  words = ["the", "dog", "cat", "runs", "sees", "a", "big", "small", "bird", "and"]
  return "".join(" ".join(rng.choice(words, size=6)) + ".\n" for _ in range(n_lines))


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("text") / "corpus.txt"
  path.write_text(_text(), encoding="utf-8")
  return str(path)


# ---------------------------------------------------------------- Transformer


@pytest.fixture(scope="module", params=[True, False], ids=["pre_ln", "post_ln"])
def transformer(request):
  c = _config("transformer", **{"model.pre_ln": request.param})
  return model_setup.make_model(c, 9, 11)


def test_transformer_decoder_is_causal(transformer):
  src = jnp.array([[4, 5, 6, 0], [7, 8, 4, 5]])
  tgt = jnp.array([[1, 6, 5, 4, 2, 0], [1, 5, 4, 8, 7, 2]])
  logits, aux = transformer(src, tgt)
  t = 2
  changed = tgt.at[:, t + 1 :].set(jnp.array([9, 10, 3]))
  logits2, _ = transformer(src, changed)
  np.testing.assert_allclose(logits[:, : t + 1], logits2[:, : t + 1], atol=1e-5)
  assert np.abs(np.asarray(logits[:, t + 1 :] - logits2[:, t + 1 :])).max() > 1e-3
  # cross-attention weights: sum to 1 over real source positions, 0 on padding
  att = np.asarray(aux["attention"])  # (B, T, S)
  np.testing.assert_allclose(att.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_array_equal(att[0, :, 3], 0.0)


def test_transformer_kv_cache_equals_teacher_forcing(transformer):
  src = jnp.array([[4, 5, 6, 0], [7, 8, 4, 5]])
  tgt = jnp.array([[1, 6, 5, 4, 2], [1, 5, 4, 8, 7]])
  logits, aux = transformer(src, tgt)
  memory = transformer.encode(src)
  state = transformer.init_decode_state(memory, max_length=8)
  step = jax.jit(transformer.decode_step)
  outs, atts = [], []
  for t in range(tgt.shape[1]):
    lg, state, att = step(memory, state, tgt[:, t])
    outs.append(lg)
    atts.append(att)
  np.testing.assert_allclose(jnp.stack(outs, 1), logits, atol=2e-5)
  np.testing.assert_allclose(jnp.stack(atts, 1), aux["attention"], atol=2e-6)


def test_tiny_transformer_learns_reverse(tmp_path):
  config = _config("transformer")
  final = train.train_and_evaluate(config, str(tmp_path))
  # 600 steps, lengths 1-5, vocabulary 6, on held-out eval sequences (never
  # trained on): measured 0.9375 exact match, 0.985 token accuracy (seed 0,
  # CPU). With 300 steps at 3e-3 it read 0.953 while eval sequences could be
  # training sequences, and 0.64 once they could not.
  assert final["sequence_accuracy"] >= 0.9
  assert final["token_accuracy"] >= 0.95


# ---------------------------------------------------------------- GPT


@pytest.fixture(scope="module")
def gpt_model():
  c = _config("gpt", **{"data.train_path": "unused.txt"})
  return model_setup.make_model(c, 0, 20)


def test_gpt_is_causal_and_ties_weights(gpt_model):
  x = jax.random.randint(jax.random.PRNGKey(0), (2, 10), 4, 20)
  logits = gpt_model(x)
  assert logits.shape == (2, 10, 20)
  t = 4
  x2 = x.at[:, t + 1 :].set((x[:, t + 1 :] + 1) % 16 + 4)
  logits2 = gpt_model(x2)
  np.testing.assert_allclose(logits[:, : t + 1], logits2[:, : t + 1], atol=1e-5)
  assert np.abs(np.asarray(logits[:, t + 1 :] - logits2[:, t + 1 :])).max() > 1e-4
  params = nnx.state(gpt_model, nnx.Param)
  assert "out" not in params and "lm_head" not in params  # tied: no output matrix
  h = gpt_model.final_norm(jnp.ones((1, 1, 32)))
  np.testing.assert_allclose(
    gpt_model.tok_embed.attend(h), h @ gpt_model.tok_embed.embedding.value.T, atol=1e-6
  )


def test_gpt_kv_cache_equals_full_and_sampling_is_greedy_at_t0(gpt_model):
  x = jax.random.randint(jax.random.PRNGKey(1), (2, 9), 4, 20)
  full = gpt_model(x)
  inc, _ = decode_in_steps(gpt_model.decode, x, gpt_model.init_cache(2, 12), prefill=5)
  np.testing.assert_allclose(inc, full, atol=2e-5)
  # compiled sampling (one lax.scan) at temperature 0 = a Python greedy loop
  graphdef, params = nnx.split(gpt_model, nnx.Param)
  sampler = generate.make_sampler(graphdef, max_new_tokens=5, temperature=0.0, top_k=0)
  got = np.asarray(sampler(params, x[:, :4], jax.random.PRNGKey(0)))
  # The Python loop runs one padded shape (2, 9): the model is causal (tested
  # above), so the logits at position t read only tokens 0..t.
  seq = np.zeros((2, 9), np.int32)
  seq[:, :4] = np.asarray(x[:, :4])
  for t in range(4, 9):
    lg = np.array(gpt_model(jnp.asarray(seq)))[:, t - 1]
    lg[:, :3] = -np.inf
    seq[:, t] = lg.argmax(-1)
  np.testing.assert_array_equal(got, seq[:, 4:])
  top1 = generate.make_sampler(graphdef, max_new_tokens=5, temperature=1.0, top_k=1)
  np.testing.assert_array_equal(top1(params, x[:, :4], jax.random.PRNGKey(3)), got)


# ---------------------------------------------------------------- text task


def test_text_task_batches_vocab_and_errors(tmp_path, text_file):
  c = _config("gpt", **{"data.train_path": text_file})
  task = data_lib.make_task(c)
  a, b = task.train_batch(3), data_lib.make_task(c).train_batch(3)
  np.testing.assert_array_equal(a["inputs"], b["inputs"])  # (seed, index)
  assert a["inputs"].shape == (c.train.batch_size, c.data.max_length)
  np.testing.assert_array_equal(a["inputs"][:, 1:], a["targets"][:, :-1])
  assert not np.array_equal(task.train_batch(4)["inputs"], a["inputs"])
  ev = task.eval_set()
  assert ev["inputs"].shape[1] == c.data.max_length and len(ev["inputs"]) >= 1
  # the vocabulary round-trips through its text file, newline included
  path = str(tmp_path / "v.txt")
  task.tgt_vocab.save(path)
  from attention_jax.data.vocab import Vocabulary

  v = Vocabulary.load(path)
  assert v == task.tgt_vocab and "U+000A" in v.tokens
  assert text_task.decode(v, text_task.encode(v, "the dog.\n")) == "the dog.\n"

  bad = tmp_path / "bad.txt"
  bad.write_bytes(b"hello\n\xff\xfe world")
  empty = tmp_path / "empty.txt"
  empty.write_bytes(b"")
  for path, needle in (
    (str(tmp_path / "missing.txt"), "file not found"),
    (str(empty), "file is empty"),
    (str(bad), "not valid UTF-8 (byte 6, line 2)"),
  ):
    with pytest.raises((config_lib.ConfigError, FileNotFoundError)) as e:
      data_lib.make_task(_config("gpt", **{"data.train_path": path}))
    assert path in str(e.value) and needle in str(e.value)
    assert "\n" not in str(e.value)


def test_config_validation_for_attention_models():
  c = _config("transformer", **{"model.num_heads": 3})
  with pytest.raises(config_lib.ConfigError, match="divisible by 'model.num_heads'"):
    validation.validate(c)
  c = _config("gpt", **{"model.attention_impl": "flash"})
  with pytest.raises(config_lib.ConfigError, match="'model.attention_impl'"):
    validation.validate(c)
  c = _config("gpt", **{"data.max_length": 100})
  with pytest.raises(config_lib.ConfigError, match="'model.max_positions'"):
    validation.validate(c)
  c = _config("transformer", **{"data.task": "text"})
  with pytest.raises(config_lib.ConfigError, match="allows: 'gpt'"):
    validation.validate(c)


def test_tiny_gpt_perplexity_falls_and_generate_prints(tmp_path, text_file):
  workdir = str(tmp_path / "gpt")
  c = _config("gpt", **{"data.train_path": text_file})
  train.train_and_evaluate(c, workdir)
  evals = [r for r in writers.read_metrics(workdir) if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [20, 40, 60]
  assert evals[-1]["perplexity"] < 0.7 * evals[0]["perplexity"]
  assert np.isclose(evals[-1]["perplexity"], np.exp(evals[-1]["loss"]))
  # --step best: the lowest dev loss (a language model's default best_metric)
  best = min(evals, key=lambda r: (r["loss"], r["step"]))
  rep, _ = evaluation.evaluate_workdir(workdir, "eval", step="best")
  assert rep["step"] == best["step"] and rep["objective"] == "lm"
  assert rep["overall"]["loss"] == pytest.approx(best["loss"], rel=1e-5)
  # library call: deterministic by seed, only known characters
  one = generate.generate_text(workdir, "the dog", max_new_tokens=20, seed=1)
  assert len(one) == 20 and one == generate.generate_text(
    workdir, "the dog", max_new_tokens=20, seed=1
  )
  assert set(one) <= set(_text())
  # the command line
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.generate",
      "--workdir",
      workdir,
      "--prompt",
      "The dog",
      "--max_new_tokens",
      "12",
      "--top_k",
      "5",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.startswith("The dog") and len(out.stdout) >= 7 + 12 + 1
  with pytest.raises(ValueError, match=r"exceeds model.max_positions \(64\)"):
    generate.generate_text(workdir, "x", max_new_tokens=1000)


def test_gpt_scan_layers_is_the_same_function():
  """``model.scan_layers``: one lax.scan over stacked blocks equals the loop —
  logits, and gradients of every parameter, with dropout on."""
  base = _config(
    "gpt", **{"model.num_layers": 3, "model.dropout": 0.1, "model.attention_dropout": 0.1}
  )
  scanned = _config(
    "gpt",
    **{
      "model.num_layers": 3,
      "model.dropout": 0.1,
      "model.attention_dropout": 0.1,
      "model.scan_layers": True,
    },
  )
  tokens = jnp.array([[4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4]])
  rng = jax.random.PRNGKey(1)
  out = []
  for c in (base, scanned):
    graphdef, params = nnx.split(model_setup.make_model(c, 12, 12))

    def loss(p, graphdef=graphdef):
      return (nnx.merge(graphdef, p)(tokens, dropout_rng=rng) ** 2).mean()

    out.append(jax.jit(jax.value_and_grad(loss))(params))
  (l0, g0), (l1, g1) = out
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1), strict=True):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
