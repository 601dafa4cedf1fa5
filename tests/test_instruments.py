"""The research instruments: linear probes, attention against gold alignments,
position schemes (RoPE, ALiBi, ...) and GPT as a decoder-only seq2seq model."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, tiny_config
from flax import nnx

from attention_jax import attention, metrics, models, positions, probe
from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax.data import reorder, synthetic
from attention_jax.data.vocab import EOS
from attention_jax.errors import ConfigError, EvalError
from attention_jax.testing import decode_in_steps


def _cli(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", *args],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=env,
  )


# ------------------------------------------------------------------ probes


def test_probe_reads_exactly_what_a_hand_built_state_holds():
  """States that encode the last source token (a one-hot of it, plus
  noise features): the probe of position S-1 is perfect, the others sit at
  chance; fitting is deterministic."""
  V, L, n, m = 5, 4, 400, 200
  rng = np.random.default_rng(0)
  src = rng.integers(0, V, size=(n + m, L))
  x = np.concatenate([np.eye(V)[src[:, -1]], rng.normal(size=(n + m, 3))], 1)
  args = dict(
    x=x[None, :n],
    y=src[:n].T[None],
    w=np.ones((1, n)),
    x_test=x[None, n:],
    y_test=src[n:].T[None],
    w_test=np.ones((1, m)),
  )
  acc, chance = probe.fit_probes(**args, num_classes=V, steps=100)
  assert acc.shape == chance.shape == (1, L)
  assert acc[0, L - 1] == 1.0
  # other positions are independent of the state: accuracy near 1/V, and near
  # the majority-class chance level the probe reports
  np.testing.assert_allclose(acc[0, : L - 1], 1 / V, atol=0.09)
  np.testing.assert_allclose(chance[0], 1 / V, atol=0.09)
  np.testing.assert_allclose(acc[0, : L - 1], chance[0, : L - 1], atol=0.1)
  again, _ = probe.fit_probes(**args, num_classes=V, steps=100)
  np.testing.assert_array_equal(acc, again)


def test_probe_sources_are_distinct_held_out_and_deterministic_by_seed():
  task = data_lib.build_task(tiny_config(**{"data.vocab_size": 8, "data.eval_max_length": 6}))
  a = probe.draw_sources(task, "test", [3, 5], 30, seed=0)
  assert a == probe.draw_sources(task, "test", [3, 5], 30, seed=0)
  assert a != probe.draw_sources(task, "test", [3, 5], 30, seed=1)
  for L, pairs in a.items():
    assert len(pairs) == 30 and all(len(s) == L for s, _ in pairs)
    assert len({tuple(s) for s, _ in pairs}) == 30  # distinct
    assert all(t == s[::-1] for s, t in pairs)  # reverse

  def draw(split):
    return {tuple(s) for s, _ in task.examples(split, np.random.default_rng(3), 500)}

  test_set, train_set = draw("test"), draw("train")
  drawn = {tuple(s) for pairs in a.values() for s, _ in pairs}
  assert not drawn & train_set and drawn & test_set


def test_lstm_states_are_probed_as_h_and_cell_apart():
  """An LSTM's decoder state is probed as its hidden state ``h`` and its cell
  ``c`` apart (h = o ⊙ tanh(c): |h| <= |tanh c| elementwise, and the two
  differ); the GRU models' single state ``s`` is probed in test_ablations."""
  src = jnp.array([[4, 5, 3, 0], [3, 4, 5, 5]])
  for name in ("seq2seq_lstm", "luong"):
    model = models.build_model(tiny_config(**{"model.name": name}), 6, 6)
    feats = model.state_features(model.init_decode_state(model.encode(src)))
    assert set(feats) == {"h", "c"} and feats["h"].shape == feats["c"].shape
    h, c = np.asarray(feats["h"]), np.asarray(feats["c"])
    assert np.all(np.abs(h) <= np.abs(np.tanh(c)) + 1e-6)
    assert not np.allclose(h, c, atol=1e-3)


# ------------------------------------------------------------------ alignment


def test_alignment_of_gold_and_uniform_attention():
  S = 6
  gold = jnp.asarray([list(range(S - 1, -1, -1)) + [-1]])  # reverse + EOS
  tgt = jnp.asarray([[5, 4, 3, 6, 7, 8, 2]])  # 2 = EOS
  exact = jax.nn.one_hot(jnp.maximum(gold, 0), S)  # (1, T, S)
  r = metrics.alignment_sums(exact, gold, tgt)
  assert metrics.alignment_ratios(r["hits"], r["mass"], r["aligned"]) == {
    "alignment_accuracy": 1.0,
    "gold_attention_mass": 1.0,
  }
  assert float(r["aligned"][0]) == S and float(r["unaligned"][0]) == 0
  uniform = jnp.full((1, S + 1, S), 1.0 / S)
  r = metrics.alignment_sums(uniform, gold, tgt)
  ratios = metrics.alignment_ratios(r["hits"], r["mass"], r["aligned"])
  # argmax of a tie is the first source position: one hit in S
  assert ratios["alignment_accuracy"] == pytest.approx(1 / S)
  assert ratios["gold_attention_mass"] == pytest.approx(1 / S)
  # a token without a gold source is left out, and counted
  holed = gold.at[0, 2].set(-1)
  r = metrics.alignment_sums(exact, holed, tgt)
  assert float(r["aligned"][0]) == S - 1 and float(r["unaligned"][0]) == 1
  assert metrics.alignment_ratios(0, 0, 0)["alignment_accuracy"] is None


def test_gold_alignments_of_copy_reverse_sort():
  src = [4, 7, 3, 7, 5]
  assert synthetic.gold_alignment("copy", src) == [0, 1, 2, 3, 4]
  assert synthetic.gold_alignment("reverse", src) == [4, 3, 2, 1, 0]
  # sorted: 3 4 5 7 7 -> the repeated 7s have no unique source
  assert synthetic.gold_alignment("sort", src) == [2, 0, 4, -1, -1]
  assert synthetic.gold_alignment("addition", src) is None
  for task in ("copy", "reverse", "sort"):
    for s in np.random.default_rng(1).integers(3, 9, size=(50, 6)).tolist():
      tgt = synthetic.TARGET_FNS[task](s)
      for t, j in enumerate(synthetic.gold_alignment(task, s)):
        assert j == -1 or tgt[t] == s[j]


def test_reorder_gold_alignment_is_a_permutation_of_content_words():
  task = data_lib.build_task(
    tiny_config(
      **{
        "data.task": "reorder",
        "data.vocab_size": 8,
        "data.train_max_length": 20,
        "data.eval_max_length": 20,
        "data.eval_examples": 200,
      }
    )
  )
  function_en = set(task.src_vocab.encode(reorder._FUNCTION_EN))
  function_de = set(task.tgt_vocab.encode(reorder._FUNCTION_DE))
  auxiliaries = set(task.src_vocab.encode(["have", "had"]))
  examples = task.aligned_examples("test", np.random.default_rng(0), 300)
  assert len(examples) == 300
  for src, tgt, gold in examples:
    assert len(gold) == len(tgt)
    aligned = [j for j in gold if j >= 0]
    assert len(set(aligned)) == len(aligned)  # one target token per source
    content = {j for j, w in enumerate(src) if w not in function_en}
    assert content <= set(aligned)  # every content word aligned
    # the only function words with a gold partner: the auxiliaries have/had
    assert {src[j] for j in set(aligned) - content} <= auxiliaries
    for t, j in enumerate(gold):
      assert (j >= 0) == (tgt[t] not in function_de)
  batch = task.eval_set("test")
  assert batch["align"].shape == batch["tgt_out"].shape
  eos = batch["tgt_out"] == EOS
  assert np.all(batch["align"][eos] == -1)


# ------------------------------------------------------------------ positions


def test_rope_matches_complex_rotation_and_depends_on_relative_position():
  h = 8
  q, k = jax.random.normal(jax.random.PRNGKey(0), (2, 1, 1, 1, h))
  # reference: pairs as complex numbers times e^{i p θ_i} (Su et al. eq. 34)
  theta = 10000.0 ** (-np.arange(0, h, 2) / h)
  qn = np.asarray(q[0, 0, 0], np.float64)
  want = (qn[0::2] + 1j * qn[1::2]) * np.exp(1j * 7 * theta)
  got = np.asarray(positions.rope(q, jnp.array([[7]]), heads_major=True)[0, 0, 0])
  np.testing.assert_allclose(got[0::2], want.real, atol=1e-5)
  np.testing.assert_allclose(got[1::2], want.imag, atol=1e-5)

  def score(m, n):
    a = positions.rope(q, jnp.array([[m]]), heads_major=True)
    b = positions.rope(k, jnp.array([[n]]), heads_major=True)
    return float(jnp.sum(a * b))

  for m, n in ((3, 1), (10, 2), (0, 5)):
    for shift in (1, 17, 100):
      assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
  assert abs(score(3, 1) - score(4, 1)) > 1e-3  # and it does see distance


def test_alibi_slopes_and_bias():
  for n in (1, 2, 4, 8, 16):
    np.testing.assert_allclose(
      positions.alibi_slopes(n), [2.0 ** (-8 * i / n) for i in range(1, n + 1)]
    )
  # not a power of two: the reference code's interleaving (Press et al.)
  np.testing.assert_allclose(positions.alibi_slopes(6), [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3])
  np.testing.assert_allclose(positions.alibi_slopes(12)[8:], [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5])
  bias = np.asarray(
    positions.alibi_bias([0.5, 0.25], jnp.arange(4)[None], jnp.arange(4)[None])
  )  # (1, 2, 4, 4)
  i, j = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
  for h, m in enumerate((0.5, 0.25)):
    causal = np.tril(np.ones((4, 4), bool))
    np.testing.assert_allclose(bias[0, h][causal], (-m * (i - j))[causal])
    np.testing.assert_allclose(bias[0, h], -m * np.abs(i - j))  # encoder


def _reference_attention(mha, x, scheme, causal):
  """softmax(q kᵀ/√h + bias) v written out in numpy from the module's weights."""
  p = {
    n: (
      np.asarray(getattr(mha, n).kernel[...], np.float64),
      np.asarray(getattr(mha, n).bias[...], np.float64),
    )
    for n in ("query", "key", "value", "out")
  }
  xn = np.asarray(x, np.float64)
  q, k, v = (
    np.einsum("btd,dnh->bnth", xn, p[n][0]) + p[n][1][:, None] for n in ("query", "key", "value")
  )
  T, h = x.shape[1], q.shape[-1]
  pos = np.arange(T)
  if scheme == "rope":
    theta = 10000.0 ** (-np.arange(0, h, 2) / h)
    rot = np.exp(1j * pos[:, None] * theta)  # (T, h/2)

    def rotate(a):
      c = (a[..., 0::2] + 1j * a[..., 1::2]) * rot
      return np.stack([c.real, c.imag], -1).reshape(a.shape)

    q, k = rotate(q), rotate(k)
  scores = np.einsum("bnth,bnsh->bnts", q, k) / np.sqrt(h)
  if scheme == "alibi":
    m = np.asarray(positions.alibi_slopes(q.shape[1]))
    scores = scores - m[:, None, None] * np.abs(pos[:, None] - pos[None])
  if causal:
    scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
  w = np.exp(scores - scores.max(-1, keepdims=True))
  w /= w.sum(-1, keepdims=True)
  o = np.einsum("bnts,bnsh->bnth", w, v)
  return np.einsum("bnth,nhd->btd", o, p["out"][0]) + p["out"][1]


@pytest.mark.parametrize("scheme", ["rope", "alibi"])
def test_attention_position_terms_on_every_path_and_through_the_cache(scheme):
  D, N, T = 16, 4, 6
  mha = attention.MultiHeadAttention(D, N, position=scheme, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (2, T, D))
  for causal in (True, False):
    want = _reference_attention(mha, x, scheme, causal)
    for impl in ("einsum", "xla"):
      mha.implementation = impl
      got, _ = mha(x, is_causal=causal)
      np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"{impl} {causal}")
  full, _ = mha(x, is_causal=True)
  inc, _ = decode_in_steps(mha.decode, x, mha.init_cache(2, 9), prefill=2)
  np.testing.assert_allclose(inc, full, atol=1e-5)
  with pytest.raises(ValueError, match="self-attention only"):
    mha(x, x)


def _transformer(scheme, **overrides):
  c = tiny_config(
    **{
      "model.name": "transformer",
      "model.hidden_size": 16,
      "model.num_layers": 2,
      "model.num_heads": 2,
      "model.mlp_dim": 32,
      "model.max_positions": 16,
      "model.position": scheme,
      **overrides,
    }
  )
  config_lib.validate(c)
  return models.build_model(c, 9, 11)


@pytest.mark.parametrize("scheme", ["sinusoidal", "learned", "rope", "alibi"])
def test_transformer_every_scheme_kv_cache_equals_teacher_forcing(scheme):
  model = _transformer(scheme)
  src = jnp.array([[4, 5, 6, 0], [7, 8, 4, 5]])
  tgt = jnp.array([[1, 6, 5, 4, 2], [1, 5, 4, 8, 7]])
  logits, aux = model(src, tgt)
  memory = model.encode(src)
  state = model.init_decode_state(memory, max_length=8)
  outs, atts = [], []
  for t in range(tgt.shape[1]):
    lg, state, att = model.decode_step(memory, state, tgt[:, t])
    outs.append(lg)
    atts.append(att)
  np.testing.assert_allclose(jnp.stack(outs, 1), logits, atol=1e-5)
  np.testing.assert_allclose(jnp.stack(atts, 1), aux["attention"], atol=1e-5)
  # padding the source does not change what the real tokens compute
  padded, _ = model(jnp.pad(src, ((0, 0), (0, 2))), tgt)
  np.testing.assert_allclose(padded, logits, atol=1e-5)


def test_auto_keeps_each_models_original_parameters():
  auto = nnx.state(_transformer("auto"), nnx.Param)
  assert jax.tree.structure(auto) == jax.tree.structure(
    nnx.state(_transformer("sinusoidal"), nnx.Param)
  )
  assert "src_pos_embed" in nnx.state(_transformer("learned"), nnx.Param)
  gpt = _gpt("auto", task="text")
  assert gpt.position == "learned" and gpt.pos_embed is not None


def _gpt(scheme, task="reverse", **overrides):
  extra = (
    {"data.max_length": 16, "data.text_file": "unused.txt"}
    if task == "text"
    else {"data.vocab_size": 8}
  )
  c = tiny_config(
    **{
      "model.name": "gpt",
      "data.task": task,
      "model.hidden_size": 16,
      "model.num_layers": 2,
      "model.num_heads": 2,
      "model.mlp_dim": 32,
      "model.max_positions": 24,
      "model.position": scheme,
      **extra,
      **overrides,
    }
  )
  return models.build_model(c, 8, 8)


@pytest.mark.parametrize("scheme", ["sinusoidal", "learned", "rope", "alibi", "none"])
def test_gpt_seq2seq_every_scheme_kv_cache_equals_full_forward(scheme):
  model = _gpt(scheme)
  assert model.is_seq2seq
  src = jnp.array([[4, 5, 6, 3, 0, 0], [7, 5, 4, 6, 3, 7]])  # right-padded
  tgt_in = jnp.array([[1, 3, 6, 5, 4], [1, 7, 3, 6, 4]])
  logits, aux = model(src, tgt_in)
  assert logits.shape == (2, 5, 8) and aux == {}
  memory = model.encode(src)
  state = model.init_decode_state(memory)
  outs = []
  for t in range(tgt_in.shape[1]):
    lg, state, _ = model.decode_step(memory, state, tgt_in[:, t])
    outs.append(lg)
  np.testing.assert_allclose(jnp.stack(outs, 1), logits, atol=1e-5)
  # a padded source computes what the unpadded one does (positions count
  # real tokens, padding is masked out as keys)
  alone, _ = model(src[:1, :4], tgt_in[:1])
  np.testing.assert_allclose(alone, logits[:1], atol=1e-5)
  # The model scores exactly the T+1 target positions over the target
  # vocabulary (asserted above), so the loss, cross-entropy of those logits
  # with tgt_out, covers the target only. Each of them sees the whole source
  # and only the earlier target tokens:
  other, _ = model(src.at[:, 0].set(3), tgt_in)
  assert np.abs(np.asarray(other - logits)).max(axis=-1).min() > 1e-6
  later, _ = model(src, tgt_in.at[:, 3].set(2))
  np.testing.assert_array_equal(later[:, :3], logits[:, :3])
  assert np.abs(np.asarray(later[:, 3:] - logits[:, 3:])).max() > 1e-4


@pytest.mark.parametrize("scheme", ["rope", "alibi"])
def test_gpt_language_model_kv_cache_equals_full_forward(scheme):
  model = _gpt(scheme, task="text")
  tokens = jnp.array([[3, 4, 5, 6, 7, 3, 4], [7, 6, 5, 4, 3, 2, 1]])
  full = model(tokens)
  inc, _ = decode_in_steps(model.decode, tokens, model.init_cache(2), prefill=3)
  np.testing.assert_allclose(inc, full, atol=1e-5)


def test_validation_of_positions():
  def check(**kw):
    config_lib.validate(tiny_config(**kw))

  tr = {"model.name": "transformer", "model.hidden_size": 16, "model.num_heads": 2}
  with pytest.raises(ConfigError, match="'model.position' is 'none'.*encoder"):
    check(**tr, **{"model.position": "none"})
  with pytest.raises(ConfigError, match="model.position.*'sideways'"):
    check(**tr, **{"model.position": "sideways"})
  with pytest.raises(ConfigError, match="rope.*even"):
    check(**{**tr, "model.hidden_size": 6, "model.position": "rope"})
  with pytest.raises(ConfigError, match="model.position"):  # not read by rnns
    check(**{"model.name": "rnnsearch", "model.position": "rope"})
  gpt = {"model.name": "gpt", "data.task": "reverse", "model.hidden_size": 16, "model.num_heads": 2}
  check(**gpt, **{"model.position": "none", "model.max_positions": 12})
  with pytest.raises(
    ConfigError,
    match=r"max_positions' \(11\).*source \+ "
    r"separator \+ target \+ beam search's final step.*= 12",
  ):
    check(**gpt, **{"model.max_positions": 11})
  for scheme in positions.SCHEMES[1:]:
    check(**gpt, **{"model.position": scheme})


# ------------------------------------------------------------------ end to end


def test_probe_command_line_refuses_bad_input_in_one_line(tmp_path):
  for flags, needle in (
    (["--examples_per_length", "5"], "--examples_per_length 5"),
    (["--split", "train"], "--split 'train'"),
    (["--decoder_lengths", "a,b"], "--decoder_lengths a,b"),
  ):
    p = _cli("probe", "--workdir", str(tmp_path), *flags)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert needle in p.stderr


def test_probe_decoder_maps_only_where_the_target_is_as_long_as_the_source(tmp_path):
  """On ``addition`` (a target shorter than its source) the initial state is
  probed and the decoder maps are not: asked for, they are refused."""
  from attention_jax import train

  config = tiny_config(
    **{
      "model.name": "rnn_encdec",
      "data.task": "addition",
      "data.train_max_length": 4,
      "data.eval_max_length": 4,
      "train.steps": 1,
      "eval.every_steps": 1,
      "checkpoint.every_steps": 1,
    }
  )
  train.train_and_evaluate(config, str(tmp_path))
  with pytest.raises(
    EvalError,
    match="--decoder_lengths: the decoder maps need a target as long as its source .* 'addition'",
  ):
    probe.probe_workdir(str(tmp_path), decoder_lengths=[3], per_length=20, steps=2)
  summary = probe.probe_workdir(str(tmp_path), per_length=20, steps=2)
  assert summary["decoder_lengths"] == [] and summary["lengths"]
  assert "decoder_png" not in summary["paths"]
