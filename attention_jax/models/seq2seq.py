"""Recurrent encoder–decoders: ``rnn_encdec``, ``seq2seq_lstm``, ``rnnsearch``, ``luong``.

Each follows the sequence-to-sequence protocol that training, decoding and evaluation rely
on (docs/models.md#the-sequence-to-sequence-protocol): ``model(src, tgt_in) -> (logits
[B, T, V], aux)``, ``encode``, ``init_decode_state``, ``decode_step``; and names the parts
of its decoder state for ``attention_jax.probe``: ``state_features(state) -> {name: [B, F]}``
(a GRU state ``s``; an LSTM's ``h`` and cell ``c`` apart). ``src [B, S]`` is right-padded
with PAD (0); the source mask is ``src != PAD``.
Papers: Cho et al. 2014; Sutskever et al. 2014; Bahdanau et al. 2014; Luong et al. 2015.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from attention_jax import attention as attention_lib
from attention_jax import rnn
from attention_jax.config_fields import read_when
from attention_jax.data.vocab import PAD
from attention_jax.models.hparams import RecurrentEncoderDecoder
from attention_jax.models.layers import Embed, Readout, dropout


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNNEncDecConfig(RecurrentEncoderDecoder):
  """``rnn_encdec``: one GRU layer each side (no ``cell``, ``num_layers``)."""

  reverse_source: bool = False  # read the source backwards (Sutskever et al. 2014); off: Cho's
  gru_reset_after: bool = False  # False: Cho et al. 2014's GRU; True: the cuDNN form


@dataclasses.dataclass(frozen=True, kw_only=True)
class Seq2SeqLSTMConfig(RecurrentEncoderDecoder):
  """``seq2seq_lstm``: LSTM cells (no ``cell``, ``gru_reset_after``)."""

  num_layers: int = 1  # LSTM layers per side (the paper: 4); 1 for the small tasks
  reverse_source: bool = False  # read the source backwards (the paper's Section 3.3 trick)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RNNSearchConfig(RecurrentEncoderDecoder):
  """``rnnsearch``: GRUs, one layer; the source is read both ways (no ``reverse_source``)."""

  attention_dim: int = 0  # additive attention units (A.1.2's n'); 0: hidden_size
  gru_reset_after: bool = False  # False: Cho et al. 2014's GRU (the paper's); True: cuDNN form


@dataclasses.dataclass(frozen=True, kw_only=True)
class LuongConfig(RecurrentEncoderDecoder):
  """``luong``: stacked LSTMs (no ``cell``, ``gru_reset_after``)."""

  num_layers: int = 1  # LSTM layers per side (the paper: 4); 1 for the small tasks
  reverse_source: bool = False  # read the source backwards (the paper's setup reverses)
  input_feeding: bool = True  # feed h̃_{t-1} to the decoder (Section 3.3); on as in the paper
  attention_score: str = "general"  # dot | general | concat (eq. 8); general: the paper's best
  attention_dim: int = read_when(lambda hp: hp.attention_score == "concat", 0)  # concat units; 0: H


def _init_embeddings_and_options(module, hp: RecurrentEncoderDecoder, rngs: nnx.Rngs) -> None:
  """What every recurrent encoder-decoder sets from its hyperparameters: the
  dropout rate, the scans' execution options (``rnn_*``) and the source and
  target embeddings (``embed_dim`` wide)."""
  module.dropout_rate = hp.dropout
  module.scan_options = rnn.static_layer_options(hp)
  module.src_embed = Embed(hp.src_vocab_size, hp.embed_dim, rngs=rngs)
  module.tgt_embed = Embed(hp.tgt_vocab_size, hp.embed_dim, rngs=rngs)


class RNNEncoderDecoder(nnx.Module):
  """RNN encoder–decoder of Cho et al. 2014 (Section 2.2), GRU cells.

  The encoder reads the source into its final state, the fixed-length context
  vector ``c = h_{T_x}`` — the *bottleneck*: everything about the source must
  pass through these ``hidden_size`` numbers. The decoder starts from
  ``s_0 = tanh(V c)`` and sees ``c`` at every step and in its output layer:

      s_t = GRU(s_{t-1}, [e(y_{t-1}); c])                 (eq. 2 form)
      p(y_t | y_<t, c) = softmax(g(s_t, e(y_{t-1}), c))    (eq. 3; g = readout)
  """

  config_class = RNNEncDecConfig

  def __init__(self, hp: RNNEncDecConfig, *, rngs: nnx.Rngs):
    E, H = hp.embed_dim, hp.hidden_size
    _init_embeddings_and_options(self, hp, rngs)
    self.reverse_source = hp.reverse_source  # read the source backwards
    self.encoder = rnn.GRUCell(E, H, reset_after=hp.gru_reset_after, rngs=rngs)
    self.init_state = nnx.Linear(H, H, rngs=rngs)  # V in s_0 = tanh(V c)
    self.decoder = rnn.GRUCell(E + H, H, reset_after=hp.gru_reset_after, rngs=rngs)
    self.readout = Readout(
      H + E + H, hp.tgt_vocab_size, kind=hp.readout, maxout_units=hp.readout_dim or H, rngs=rngs
    )

  def encode(self, src: jax.Array, dropout_rng=None) -> dict[str, jax.Array]:
    if self.reverse_source:  # Sutskever et al. 2014, Section 3.3
      src = reverse_padded(src, src != PAD)
    x = dropout(self.src_embed(src), self.dropout_rate, dropout_rng)  # (B, S, E)
    context, _ = rnn.scan(self.encoder, x, mask=src != PAD, **dict(self.scan_options))  # (B, H)
    return {"context": context}

  def init_decode_state(self, memory) -> jax.Array:
    return jnp.tanh(self.init_state(memory["context"]))  # s_0 (B, H)

  def state_features(self, state) -> dict[str, jax.Array]:
    return {"s": state}  # (B, H)

  def _features(self, s, e, c):
    return jnp.concatenate([s, e, c], axis=-1)  # (…, 2H+E)

  def decode_step(self, memory, state, token):
    c = memory["context"]
    e = self.tgt_embed(token)  # (B, E)
    state = self.decoder.step(
      state, self.decoder.input_projection(jnp.concatenate([e, c], axis=-1))
    )
    logits = self.readout(self._features(state, e, c))
    return logits, state, None

  def __call__(self, src, tgt_in, dropout_rng=None):
    rng_enc = rng_dec = None
    if dropout_rng is not None:
      rng_enc, rng_dec = jax.random.split(dropout_rng)
    memory = self.encode(src, rng_enc)
    c = memory["context"]  # (B, H)
    T = tgt_in.shape[1]
    e = dropout(self.tgt_embed(tgt_in), self.dropout_rate, rng_dec)  # (B, T, E)
    c_t = jnp.broadcast_to(c[:, None, :], (c.shape[0], T, c.shape[1]))
    _, s = rnn.scan(
      self.decoder,
      jnp.concatenate([e, c_t], axis=-1),
      self.init_decode_state(memory),
      **dict(self.scan_options),
    )  # (B, T, H)
    return self.readout(self._features(s, e, c_t)), {}


# ---------------------------------------------------------------------------
# Helpers shared by the models below


def reverse_padded(x: jax.Array, mask: jax.Array) -> jax.Array:
  """``rnn.reverse_padded`` by mask: reverses each row's real positions, padding
  stays put. Its own inverse, so it also maps attention weights over a
  reversed source back to the original source positions."""
  return rnn.reverse_padded(x, mask.sum(axis=1))


def _split_rng(rng, n):
  return [None] * n if rng is None else list(jax.random.split(rng, n))


def stack_scan(cells, x, mask=None, carries=None, *, dropout_rate=0.0, rng=None, options=()):
  """Stacked RNN over a whole sequence, one scan per layer (no feedback from
  the top, so layers can run one after another). Dropout between layers
  (Zaremba et al. 2014); ``options``: :func:`rnn.static_layer_options`. Returns
  ``(final carries (list), top outputs)``."""
  finals = []
  rngs = _split_rng(rng, len(cells))
  for layer, cell in enumerate(cells):
    if layer > 0:
      x = dropout(x, dropout_rate, rngs[layer])
    carry, x = rnn.scan(cell, x, None if carries is None else carries[layer], mask, **dict(options))
    finals.append(carry)
  return finals, x


def stack_step(cells, carries, x, first_projection=None):
  """One time step of a stacked RNN: x [B, I] -> (new carries, top output).
  ``first_projection``: the first layer's projected input, when the caller
  computed it (then ``x`` is not read)."""
  new = []
  for layer, (cell, carry) in enumerate(zip(cells, carries, strict=True)):
    xp = (
      first_projection if layer == 0 and first_projection is not None else cell.input_projection(x)
    )
    carry = cell.step(carry, xp)
    new.append(carry)
    x = cell.output(carry)
  return new, x


def lstm_features(carries) -> dict[str, jax.Array]:
  """An LSTM stack's state [(c, h)] × L as ``{"h": [B, L·H], "c": [B, L·H]}``."""
  return {
    "h": jnp.concatenate([h for _, h in carries], axis=-1),
    "c": jnp.concatenate([c for c, _ in carries], axis=-1),
  }


def decoder_scan_options(scan_options, batch: int) -> tuple[bool, int]:
  """``(hoist, unroll)`` of an attention decoder's scan from ``model.rnn_*``.

  Its step computes attention from the previous state, so only the part of
  the input projection that reads the target embedding can be hoisted (one
  ``(T·B, E) × (E, G)`` matmul before the scan, as Bahdanau et al. 2014,
  A.1.2, precompute ``U h_j``); ``unroll`` is the scan's. Its backward pass is
  always autodiff: the fused custom VJP covers a bare recurrence, not
  attention inside the step (``model.rnn_backward`` steers the encoders).
  """
  opts = rnn.options_for_backend(**dict(scan_options), batch=batch)
  return opts["hoist_input_projection"], opts["unroll"]


class Seq2SeqLSTM(nnx.Module):
  """Deep LSTM encoder–decoder of Sutskever, Vinyals & Le 2014.

  An encoder LSTM of ``num_layers`` layers reads the source; the decoder LSTM
  (same depth) starts from the encoder's final (c, h) of every layer and
  models

      p(y_1 … y_T' | x_1 … x_T) = Π_t p(y_t | v, y_1 … y_{t−1})      (eq. 1)

  with v the encoder's final state and p = softmax(W h_t^top). With
  ``model.reverse_source`` the source is read backwards (Section 3.3): "a b c"
  → "c b a", which puts the first source words next to the first target words
  and creates short-term dependencies. There is no attention: ``aux`` is empty
  and ``decode_step`` returns None for the weights.
  """

  config_class = Seq2SeqLSTMConfig

  def __init__(self, hp: Seq2SeqLSTMConfig, *, rngs: nnx.Rngs):
    E, H, L = hp.embed_dim, hp.hidden_size, hp.num_layers
    _init_embeddings_and_options(self, hp, rngs)
    self.reverse_source = hp.reverse_source
    self.encoder = nnx.List(
      [rnn.make_cell("lstm", E if layer == 0 else H, H, rngs=rngs) for layer in range(L)]
    )
    self.decoder = nnx.List(
      [rnn.make_cell("lstm", E if layer == 0 else H, H, rngs=rngs) for layer in range(L)]
    )
    self.readout = Readout(
      H, hp.tgt_vocab_size, kind=hp.readout, maxout_units=hp.readout_dim or H, rngs=rngs
    )

  def encode(self, src, dropout_rng=None):
    mask = src != PAD
    if self.reverse_source:
      src = reverse_padded(src, mask)
    rngs = _split_rng(dropout_rng, 2)
    x = dropout(self.src_embed(src), self.dropout_rate, rngs[0])  # (B, S, E)
    finals, _ = stack_scan(
      self.encoder, x, mask, options=self.scan_options, dropout_rate=self.dropout_rate, rng=rngs[1]
    )
    return {"carries": finals}

  def init_decode_state(self, memory):
    return memory["carries"]  # [(c, h)] × L

  def state_features(self, state) -> dict[str, jax.Array]:
    return lstm_features(state)

  def decode_step(self, memory, state, token):
    state, h = stack_step(self.decoder, state, self.tgt_embed(token))
    return self.readout(h), state, None

  def __call__(self, src, tgt_in, dropout_rng=None):
    r_enc, r_emb, r_dec, r_out = _split_rng(dropout_rng, 4)
    memory = self.encode(src, r_enc)
    e = dropout(self.tgt_embed(tgt_in), self.dropout_rate, r_emb)  # (B, T, E)
    _, h = stack_scan(
      self.decoder,
      e,
      carries=self.init_decode_state(memory),
      options=self.scan_options,
      dropout_rate=self.dropout_rate,
      rng=r_dec,
    )  # (B, T, H)
    return self.readout(dropout(h, self.dropout_rate, r_out)), {}


class RNNSearch(nnx.Module):
  """RNNsearch of Bahdanau, Cho & Bengio 2014 ("Neural machine translation by
  jointly learning to align and translate"), Section 3 and Appendix A.

  Encoder: a bidirectional GRU; annotation h_j = [h→_j; h←_j]  (2H).
  Decoder, at step i, with the additive attention of eq. 5–6:

      e_ij = vᵀ tanh(W s_{i−1} + U h_j);  α_i = softmax(e_i);  c_i = Σ_j α_ij h_j
      s_i  = GRU(s_{i−1}, [E y_{i−1}; c_i])          (A.2.2: gates see y, s, c)
      p(y_i | y_<i, x) = g(y_{i−1}, s_i, c_i)         (eq. 4)
      s_0  = tanh(W_s h←_1)                           (A.2.2)

  g is the maxout readout of A.2.2 (``model.readout = "maxout"``) or a plain
  linear layer (``"linear"``), on [s_i; E y_{i−1}; c_i]. (A.2.2 writes the
  readout with s_{i−1}; eq. 4 — followed here — with s_i.) The keys U h_j are
  computed once per source in :meth:`encode`.
  """

  config_class = RNNSearchConfig

  def __init__(self, hp: RNNSearchConfig, *, rngs: nnx.Rngs):
    E, H = hp.embed_dim, hp.hidden_size
    A = hp.attention_dim or H
    _init_embeddings_and_options(self, hp, rngs)
    gru = dict(reset_after=hp.gru_reset_after)
    self.encoder_fwd = rnn.make_cell("gru", E, H, rngs=rngs, **gru)
    self.encoder_bwd = rnn.make_cell("gru", E, H, rngs=rngs, **gru)
    self.init_state = nnx.Linear(H, H, rngs=rngs)  # W_s
    self.attention = attention_lib.AdditiveAttention(H, 2 * H, A, rngs=rngs)
    self.decoder = rnn.make_cell("gru", E + 2 * H, H, rngs=rngs, **gru)
    self.readout = Readout(
      H + E + 2 * H, hp.tgt_vocab_size, kind=hp.readout, maxout_units=hp.readout_dim or H, rngs=rngs
    )

  def encode(self, src, dropout_rng=None):
    mask = src != PAD  # (B, S)
    x = dropout(self.src_embed(src), self.dropout_rate, dropout_rng)
    (_, bwd_first), annotations = rnn.bidirectional(
      self.encoder_fwd, self.encoder_bwd, x, mask, **dict(self.scan_options)
    )
    return {
      "annotations": annotations,  # (B, S, 2H)
      "keys": self.attention.keys(annotations),  # (B, S, A)
      "mask": mask,
      "backward_first": bwd_first,
    }  # h←_1 (B, H)

  def init_decode_state(self, memory):
    return jnp.tanh(self.init_state(memory["backward_first"]))  # s_0 (B, H)

  def state_features(self, state) -> dict[str, jax.Array]:
    return {"s": state}  # (B, H)

  def _step(self, memory, s, e, e_projection=None):
    """s_{i−1} [B, H], e = E y_{i−1} [B, E] -> (s_i, features, α_i).
    ``e_projection``: e's part of the GRU input projection, if hoisted."""
    c, alpha = self.attention(
      s, memory["keys"], memory["annotations"], memory["mask"]
    )  # (B, 2H), (B, S)
    if e_projection is None:
      xp = self.decoder.input_projection(jnp.concatenate([e, c], axis=-1))
    else:
      xp = e_projection + self.decoder.input_projection_part(c, e.shape[-1], bias=False)
    s = self.decoder.step(s, xp)
    return s, jnp.concatenate([s, e, c], axis=-1), alpha

  def decode_step(self, memory, state, token):
    state, features, alpha = self._step(memory, state, self.tgt_embed(token))
    return self.readout(features), state, alpha

  def __call__(self, src, tgt_in, dropout_rng=None):
    r_enc, r_dec = _split_rng(dropout_rng, 2)
    memory = self.encode(src, r_enc)
    e = dropout(self.tgt_embed(tgt_in), self.dropout_rate, r_dec)  # (B, T, E)
    hoist, unroll = decoder_scan_options(self.scan_options, e.shape[0])
    e_t = jnp.swapaxes(e, 0, 1)  # (T, B, E)
    ep_t = self.decoder.input_projection_part(e_t, 0, bias=True) if hoist else None  # (T, B, 3H)

    def body(s, inputs):
      e_i, ep_i = inputs
      s, features, alpha = self._step(memory, s, e_i, ep_i)
      return s, (features, alpha)

    _, (features, alpha) = jax.lax.scan(
      body, self.init_decode_state(memory), (e_t, ep_t), unroll=unroll
    )
    logits = self.readout(jnp.swapaxes(features, 0, 1))  # (B, T, V)
    return logits, {"attention": jnp.swapaxes(alpha, 0, 1)}  # (B, T, S)


class Luong(nnx.Module):
  """Global attention of Luong, Pham & Manning 2015 ("Effective approaches to
  attention-based neural machine translation"), Section 3.1 and 3.3.

  Stacked LSTM encoder and decoder (``num_layers``); the decoder starts from the
  encoder's final states. At step t, from the decoder's top state h_t:

      a_t = softmax_s score(h_t, h̄_s)   (dot | general | concat, eq. 8)
      c_t = Σ_s a_t(s) h̄_s
      h̃_t = tanh(W_c [c_t; h_t])                                    (eq. 5)
      p(y_t | y_<t, x) = softmax(W_s h̃_t)                           (eq. 6)

  Input feeding (Section 3.3, ``model.input_feeding``): the decoder's input at
  step t is [E y_{t−1}; h̃_{t−1}] (h̃_0 = 0), so the model knows its past
  alignment decisions. ``model.reverse_source`` reads the source backwards
  (as in the paper's setup); the returned weights are over the original
  source positions either way.
  """

  config_class = LuongConfig

  def __init__(self, hp: LuongConfig, *, rngs: nnx.Rngs):
    E, H, L = hp.embed_dim, hp.hidden_size, hp.num_layers
    _init_embeddings_and_options(self, hp, rngs)
    self.reverse_source = hp.reverse_source
    self.input_feeding = hp.input_feeding
    self.hidden_size = H
    self.encoder = nnx.List(
      [rnn.make_cell("lstm", E if layer == 0 else H, H, rngs=rngs) for layer in range(L)]
    )
    first_in = E + H if hp.input_feeding else E
    self.decoder = nnx.List(
      [rnn.make_cell("lstm", first_in if layer == 0 else H, H, rngs=rngs) for layer in range(L)]
    )
    self.attention = attention_lib.LuongAttention(
      H, H, hp.attention_score, hp.attention_dim, rngs=rngs
    )
    self.combine = nnx.Linear(2 * H, H, use_bias=False, rngs=rngs)  # W_c
    self.readout = Readout(
      H, hp.tgt_vocab_size, kind=hp.readout, maxout_units=hp.readout_dim or H, rngs=rngs
    )  # W_s

  def encode(self, src, dropout_rng=None):
    mask = src != PAD
    if self.reverse_source:
      src = reverse_padded(src, mask)  # padding stays at the right
    rngs = _split_rng(dropout_rng, 2)
    x = dropout(self.src_embed(src), self.dropout_rate, rngs[0])  # (B, S, E)
    finals, outputs = stack_scan(
      self.encoder, x, mask, options=self.scan_options, dropout_rate=self.dropout_rate, rng=rngs[1]
    )
    return {
      "outputs": outputs,  # h̄_s (B, S, H)
      "keys": self.attention.keys(outputs),
      "mask": mask,
      "carries": finals,
    }

  def init_decode_state(self, memory):
    outputs = memory["outputs"]
    return {
      "carries": memory["carries"],
      "attentional": jnp.zeros((outputs.shape[0], self.hidden_size), outputs.dtype),
    }  # h̃_0

  def state_features(self, state) -> dict[str, jax.Array]:
    return lstm_features(state["carries"])

  def _step(self, memory, state, e, dropout_rng=None, e_projection=None):
    """``e_projection``: e's part of the first layer's input projection, if
    hoisted (then only h̃_{t−1}'s part is computed here)."""
    x = e
    if self.input_feeding:
      x = jnp.concatenate([e, state["attentional"]], axis=-1)  # (B, E + H)
    first = None
    if e_projection is not None:
      first = e_projection
      if self.input_feeding:
        first = first + self.decoder[0].input_projection_part(
          state["attentional"], e.shape[-1], bias=False
        )
    carries, h = stack_step(self.decoder, state["carries"], x, first_projection=first)  # h_t (B, H)
    c, a = self.attention(h, memory["keys"], memory["outputs"], memory["mask"])
    h_tilde = jnp.tanh(self.combine(jnp.concatenate([c, h], axis=-1)))
    out = dropout(h_tilde, self.dropout_rate, dropout_rng)
    if self.reverse_source:
      a = reverse_padded(a, memory["mask"])  # weights over original positions
    return {"carries": carries, "attentional": h_tilde}, out, a

  def decode_step(self, memory, state, token):
    state, out, a = self._step(memory, state, self.tgt_embed(token))
    return self.readout(out), state, a

  def __call__(self, src, tgt_in, dropout_rng=None):
    r_enc, r_emb, r_dec = _split_rng(dropout_rng, 3)
    memory = self.encode(src, r_enc)
    e = dropout(self.tgt_embed(tgt_in), self.dropout_rate, r_emb)  # (B, T, E)
    T = tgt_in.shape[1]
    step_rngs = None if r_dec is None else jax.random.split(r_dec, T)
    hoist, unroll = decoder_scan_options(self.scan_options, e.shape[0])
    e_t = jnp.swapaxes(e, 0, 1)  # (T, B, E)
    ep_t = self.decoder[0].input_projection_part(e_t, 0, bias=True) if hoist else None  # (T, B, 4H)

    def body(state, inputs):
      e_i, ep_i, rng_i = inputs
      state, out, a = self._step(memory, state, e_i, rng_i, ep_i)
      return state, (out, a)

    _, (out, a) = jax.lax.scan(
      body, self.init_decode_state(memory), (e_t, ep_t, step_rngs), unroll=unroll
    )
    logits = self.readout(jnp.swapaxes(out, 0, 1))  # (B, T, V)
    return logits, {"attention": jnp.swapaxes(a, 0, 1)}  # (B, T, S)
