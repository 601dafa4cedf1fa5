"""Greedy and beam search: against each other, brute force and teacher forcing."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_config
from flax import nnx

from attention_jax import decoding, models, rnn
from attention_jax.attention import masked_softmax
from attention_jax.data.vocab import BOS, EOS, PAD


class TinyAttention(nnx.Module):
  """A small attention decoder for tests: a GRU whose state is a pytree
  ``(s, context)``, dot-product attention over projected source embeddings,
  and a teacher-forced ``__call__`` written as a Python loop over positions
  on the *unexpanded* batch (independent of beam bookkeeping)."""

  def __init__(self, v_src, v_tgt, E=8, H=12, scale=3.0, eos_bias=0.3, *, rngs):
    self.src_embed = nnx.Embed(v_src, E, rngs=rngs)
    self.tgt_embed = nnx.Embed(v_tgt, E, rngs=rngs)
    self.keys = nnx.Linear(E, H, rngs=rngs)
    self.cell = rnn.GRUCell(E + H, H, rngs=rngs)
    self.query = nnx.Linear(H, H, rngs=rngs)
    self.out = nnx.Linear(2 * H, v_tgt, rngs=rngs)
    self.out.bias[...] = self.out.bias[...].at[EOS].add(eos_bias)
    self.scale = scale

  def encode(self, src):
    return {"keys": jnp.tanh(self.keys(self.src_embed(src))), "mask": src != PAD}

  def init_decode_state(self, memory):
    k = memory["keys"]
    return (jnp.zeros((k.shape[0], k.shape[2])), k.mean(axis=1))

  def decode_step(self, memory, state, token):
    s, ctx = state
    x = jnp.concatenate([self.tgt_embed(token), ctx], -1)
    s = self.cell.step(s, self.cell.input_projection(x))
    scores = jnp.einsum("bh,bsh->bs", self.query(s), memory["keys"]) * self.scale
    a = masked_softmax(scores, memory["mask"])
    ctx = jnp.einsum("bs,bsh->bh", a, memory["keys"])
    return self.scale * self.out(jnp.concatenate([s, ctx], -1)), (s, ctx), a

  def __call__(self, src, tgt_in, dropout_rng=None):
    memory = self.encode(src)
    state = self.init_decode_state(memory)
    logits, atts = [], []
    for t in range(tgt_in.shape[1]):
      lg, state, a = self.decode_step(memory, state, tgt_in[:, t])
      logits.append(lg)
      atts.append(a)
    return jnp.stack(logits, 1), {"attention": jnp.stack(atts, 1)}


V_SRC, V_TGT = 8, 6  # 4 specials + 4 / + 2 symbols


@pytest.fixture(scope="module")
def tiny_attn():
  return TinyAttention(V_SRC, V_TGT, rngs=nnx.Rngs(1))


@pytest.fixture(scope="module")
def encdec():
  config = tiny_config()
  return models.build_model(config, 10, 10, seed=1)


SRC = jnp.array([[4, 5, 6, 7, 5], [7, 6, 0, 0, 0], [5, 0, 0, 0, 0], [6, 6, 4, 0, 0]], jnp.int32)


def _jit_search(fn, model, **kw):
  graphdef, params = nnx.split(model)
  return jax.jit(lambda p, s: fn(nnx.merge(graphdef, p), s, **kw))(params, SRC)


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, params, src, tgt_in):
  return nnx.merge(graphdef, params)(src, tgt_in)


def _teacher_forced(model, src, tokens):
  """Σ log p, length and attention of each hypothesis by teacher forcing."""
  tokens = np.asarray(tokens)
  B, L = tokens.shape
  tgt_in = np.concatenate([np.full((B, 1), BOS), tokens[:, :-1]], 1)
  graphdef, params = nnx.split(model)
  logits, aux = _forward(graphdef, params, src, jnp.asarray(tgt_in, jnp.int32))
  logp = np.asarray(jax.nn.log_softmax(logits, -1))
  lengths = np.array(
    [int(np.argmax(r == EOS)) + 1 if (r == EOS).any() else int((r != PAD).sum()) for r in tokens]
  )
  sums = np.array([logp[b, np.arange(n), tokens[b, :n]].sum() for b, n in enumerate(lengths)])
  return sums, lengths, aux.get("attention")


@pytest.mark.parametrize("which", ["tiny_attn", "encdec"])
def test_beam_size_1_equals_greedy(which, request):
  model = request.getfixturevalue(which)
  g = _jit_search(decoding.greedy_search, model, max_length=7)
  b = _jit_search(decoding.beam_search, model, max_length=7, beam_size=1, alpha=0.0).best
  np.testing.assert_array_equal(np.asarray(b.tokens), np.asarray(g.tokens))
  np.testing.assert_allclose(np.asarray(b.scores), np.asarray(g.scores), rtol=1e-5)
  if g.attention is not None:
    np.testing.assert_allclose(np.asarray(b.attention), np.asarray(g.attention), atol=1e-6)
  else:
    assert b.attention is None
  # Not vacuous: some greedy outputs end with EOS before the limit.
  if which == "tiny_attn":
    assert (np.asarray(g.tokens) == EOS).any()


def _brute_force(model, src, L, alpha):
  """The best normalised score over every output of length ≤ L."""
  content = [t for t in range(V_TGT) if t not in (PAD, BOS, EOS)]
  seqs = []
  for n in range(1, L + 1):
    for prefix in itertools.product(content, repeat=n - 1):
      seqs.append(list(prefix) + [EOS] + [PAD] * (L - n))
  seqs += [list(p) for p in itertools.product(content, repeat=L)]  # hit the limit
  seqs = np.array(seqs, np.int32)
  best = []
  for b in range(src.shape[0]):
    s = jnp.broadcast_to(src[b], (len(seqs), src.shape[1]))
    sums, lengths, _ = _teacher_forced(model, s, seqs)
    scores = sums / ((5.0 + lengths) / 6.0) ** alpha
    i = int(np.argmax(scores))
    best.append((seqs[i], scores[i], np.sort(scores)[-2]))
  return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_brute_force_best(tiny_attn, alpha):
  L = 4
  out = _jit_search(decoding.beam_search, tiny_attn, max_length=L, beam_size=40, alpha=alpha)
  greedy = _jit_search(decoding.greedy_search, tiny_attn, max_length=L)
  differs = 0
  for b, (seq, score, second) in enumerate(_brute_force(tiny_attn, SRC, L, alpha)):
    assert score - second > 1e-4  # a unique best
    np.testing.assert_array_equal(np.asarray(out.best.tokens[b]), seq)
    assert float(out.best.scores[b]) == pytest.approx(score, rel=1e-5)
    differs += not np.array_equal(np.asarray(greedy.tokens[b]), seq)
    # the K finished hypotheses are sorted best first
    assert np.all(np.diff(np.asarray(out.scores[b])) <= 1e-6)
  if alpha == 1.0:
    assert differs > 0  # the search matters: greedy misses the best somewhere


def test_beam_attention_matches_teacher_forcing(tiny_attn):
  out = _jit_search(decoding.beam_search, tiny_attn, max_length=6, beam_size=3, alpha=0.6).best
  tokens = np.asarray(out.tokens)
  sums, lengths, att = _teacher_forced(tiny_attn, SRC, tokens)
  att = np.asarray(att)
  got = np.asarray(out.attention)
  assert got.shape == (4, 6, SRC.shape[1])
  for b, n in enumerate(lengths):
    np.testing.assert_allclose(got[b, :n], att[b, :n], atol=1e-5)
    assert np.all(got[b, n:] == 0)
    np.testing.assert_allclose(got[b, :n].sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(out.scores), sums / ((5.0 + lengths) / 6.0) ** 0.6, rtol=1e-5
  )


def test_output_length_relative_to_source(tiny_attn):
  # limit = floor(1.0 * |x| + 1): sources of length 5, 2, 1, 3
  kw = dict(max_length=9, max_length_a=1.0, max_length_b=1.0)
  limit = np.array([6, 3, 2, 4])
  for fn, extra in ((decoding.greedy_search, {}), (decoding.beam_search, {"beam_size": 3})):
    h = _jit_search(fn, tiny_attn, **kw, **extra)
    h = getattr(h, "best", h)
    n = (np.asarray(h.tokens) != PAD).sum(1)
    assert np.all(n <= limit) and np.all(n >= 1)
  assert decoding.max_output_length(5, 1.5, 10) == 17
  assert decoding.max_output_length(5, 1.5, 10, cap=8) == 8


def test_decode_state_pytree_is_gathered_per_beam(encdec):
  # rnn_encdec: state is one array and memory a dict; attention is None.
  out = _jit_search(decoding.beam_search, encdec, max_length=5, beam_size=4, alpha=0.0)
  assert out.best.attention is None and out.tokens.shape == (4, 4, 5)
  sums, lengths, _ = _teacher_forced(encdec, SRC, out.best.tokens)
  np.testing.assert_allclose(np.asarray(out.best.scores), sums, rtol=1e-5)


def test_sampling_temperature_and_top_k():
  logp = jnp.log(jnp.array([[0.05, 0.05, 0.5, 0.3, 0.1]]))
  keys = jax.random.split(jax.random.PRNGKey(0), 2000)
  draws = np.asarray(jax.vmap(lambda k: decoding.sample_logits(logp, k, 1.0, 2))(keys))
  assert set(np.unique(draws)) == {2, 3}  # top-2 only
  assert abs((draws == 2).mean() - 0.5 / 0.8) < 0.05
  assert int(decoding.sample_logits(logp, keys[0], 0.0)[0]) == 2  # T=0: argmax


SEQ2SEQ_MODELS = sorted(
  n for n, cls in models.MODELS.items() if hasattr(cls, "decode_step") and hasattr(cls, "encode")
)


# The relative position schemes keep state in the KV cache (rotated keys; the
# keys' positions for ALiBi) that the beam must gather with everything else.
POSITION_CASES = [(n, "auto") for n in SEQ2SEQ_MODELS] + [
  (n, p) for n in ("transformer", "gpt") for p in ("rope", "alibi")
]


@pytest.mark.parametrize("name,position", POSITION_CASES)
def test_every_seq2seq_model_beam_matches_teacher_forcing(name, position):
  """Every registered seq2seq model (their own teacher-forced ``__call__``),
  and the Transformers with RoPE and ALiBi: the beam's score and attention
  are those of its chosen hypothesis."""
  config = tiny_config(**{"model.name": name, "model.position": position})
  model = models.build_model(config, 10, 10, seed=2)
  out = _jit_search(decoding.beam_search, model, max_length=6, beam_size=3, alpha=0.6).best
  sums, lengths, att = _teacher_forced(model, SRC, out.tokens)
  np.testing.assert_allclose(
    np.asarray(out.scores), sums / ((5.0 + lengths) / 6.0) ** 0.6, rtol=1e-4
  )
  if att is None:
    assert out.attention is None
    return
  got, att = np.asarray(out.attention), np.asarray(att)
  for b, n in enumerate(lengths):
    np.testing.assert_allclose(got[b, :n], att[b, :n], atol=1e-5)
    assert np.all(got[b, n:] == 0)


def _transformer(max_positions):
  """A random tiny Transformer that rarely says EOS (so outputs run long)."""
  config = tiny_config(
    **{
      "model.name": "transformer",
      "model.num_heads": 2,
      "model.max_positions": max_positions,
      "model.tie_embeddings": False,
    }
  )
  model = models.build_model(config, 10, 10, seed=3)
  model.out.bias[...] = model.out.bias[...].at[EOS].set(-5.0)
  return model


def test_transformer_decode_is_capped_at_its_cache_never_clamped(caplog, monkeypatch):
  """A decode limit past ``model.max_positions`` is capped (with a warning
  naming the key) and the output equals that of a model with a larger cache
  up to the cap; without the cap the cache write would clamp and corrupt it."""
  small, big = _transformer(6), _transformer(64)
  for a, b in zip(jax.tree.leaves(nnx.state(small)), jax.tree.leaves(nnx.state(big)), strict=True):
    np.testing.assert_array_equal(a, b)  # positions are sinusoids: same weights
  caplog.set_level("WARNING")
  g_small = _jit_search(decoding.greedy_search, small, max_length=20)
  assert "model.max_positions=6" in caplog.text and "capped at 6" in caplog.text
  g_big = _jit_search(decoding.greedy_search, big, max_length=20)
  small_tokens, big_tokens = np.asarray(g_small.tokens), np.asarray(g_big.tokens)
  assert small_tokens.shape == (4, 6) and big_tokens.shape == (4, 20)
  np.testing.assert_array_equal(small_tokens, big_tokens[:, :6])
  assert ((big_tokens[:, 6:] != PAD).sum(1) > 0).any()  # the cap cut something
  # Beam search takes one step more (BOS), so it is capped at 5; it equals the
  # large cache's beam search at the same limit.
  caplog.clear()
  b_small = _jit_search(decoding.beam_search, small, max_length=20, beam_size=3)
  assert "capped at 5" in caplog.text
  b_big = _jit_search(decoding.beam_search, big, max_length=5, beam_size=3)
  np.testing.assert_array_equal(np.asarray(b_small.tokens), np.asarray(b_big.tokens))
  np.testing.assert_allclose(np.asarray(b_small.scores), np.asarray(b_big.scores), rtol=1e-5)
  # Not vacuous: with the cap removed the clamped cache decodes differently.
  monkeypatch.setattr(decoding, "cap_to_model", lambda model, L, extra_steps=0, source_width=0: L)
  clamped = np.asarray(_jit_search(decoding.greedy_search, small, max_length=20).tokens)
  assert not np.array_equal(clamped, big_tokens)
  np.testing.assert_array_equal(clamped[:, :6], big_tokens[:, :6])


def test_gpt_sampling_past_the_position_table_is_refused():

  config = tiny_config(
    **{"model.name": "gpt", "model.num_heads": 2, "model.max_positions": 8, "data.task": "text"}
  )
  model = models.build_model(config, 10, 10)
  prompt = jnp.full((1, 3), 4, jnp.int32)
  assert decoding.sample_lm(model, prompt, jax.random.PRNGKey(0), max_new_tokens=5).shape == (1, 5)
  with pytest.raises(
    ValueError,
    match=r"max_new_tokens \(6\) exceeds "
    r"model.max_positions \(8\)",
  ):
    decoding.sample_lm(model, prompt, jax.random.PRNGKey(0), max_new_tokens=6)
