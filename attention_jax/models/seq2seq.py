"""Recurrent encoder–decoders.

Every sequence-to-sequence model here has the same interface, which training,
decoding and evaluation rely on:

* ``model(src, tgt_in, dropout_rng=None) -> (logits [B, T, V], aux)`` —
  teacher forcing; ``aux`` may hold ``"attention" [B, T, S]``.
* ``model.encode(src) -> memory`` (a pytree),
* ``model.init_decode_state(memory) -> state``,
* ``model.decode_step(memory, state, token [B]) -> (logits [B, V], state,
  attention [B, S] or None)`` — one step of autoregressive decoding.

``src [B, S]`` is right-padded with PAD (0); the source mask is ``src != PAD``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from attention_jax import rnn
from attention_jax.data.vocab import PAD
from attention_jax.models.layers import Readout, dropout


class RNNEncoderDecoder(nnx.Module):
  """RNN encoder–decoder of Cho et al. 2014 (Section 2.2), GRU cells.

  The encoder reads the source into its final state, the fixed-length context
  vector ``c = h_{T_x}`` — the *bottleneck*: everything about the source must
  pass through these ``hidden_size`` numbers. The decoder starts from
  ``s_0 = tanh(V c)`` and sees ``c`` at every step and in its output layer:

      s_t = GRU(s_{t-1}, [e(y_{t-1}); c])                 (eq. 2 form)
      p(y_t | y_<t, c) = softmax(g(s_t, e(y_{t-1}), c))    (eq. 3; g = readout)
  """

  def __init__(self, config, src_vocab_size: int, tgt_vocab_size: int, *,
               rngs: nnx.Rngs):
    m = config.model
    E, H = m.embed_dim, m.hidden_size
    self.dropout_rate = m.dropout
    self.src_embed = nnx.Embed(src_vocab_size, E, rngs=rngs)
    self.tgt_embed = nnx.Embed(tgt_vocab_size, E, rngs=rngs)
    self.encoder = rnn.GRUCell(E, H, reset_after=m.gru_reset_after, rngs=rngs)
    self.init_state = nnx.Linear(H, H, rngs=rngs)            # V in s_0 = tanh(V c)
    self.decoder = rnn.GRUCell(E + H, H, reset_after=m.gru_reset_after, rngs=rngs)
    self.readout = Readout(H + E + H, tgt_vocab_size, kind=m.readout,
                           maxout_units=m.readout_dim or H, rngs=rngs)

  def encode(self, src: jax.Array, dropout_rng=None) -> dict[str, jax.Array]:
    x = dropout(self.src_embed(src), self.dropout_rate, dropout_rng)  # (B, S, E)
    context, _ = rnn.scan(self.encoder, x, mask=src != PAD)         # (B, H)
    return {"context": context}

  def init_decode_state(self, memory) -> jax.Array:
    return jnp.tanh(self.init_state(memory["context"]))             # s_0 (B, H)

  def _features(self, s, e, c):
    return jnp.concatenate([s, e, c], axis=-1)                     # (…, 2H+E)

  def decode_step(self, memory, state, token):
    c = memory["context"]
    e = self.tgt_embed(token)                                        # (B, E)
    state = self.decoder.step(state, self.decoder.input_projection(
        jnp.concatenate([e, c], axis=-1)))
    logits = self.readout(self._features(state, e, c))
    return logits, state, None

  def __call__(self, src, tgt_in, dropout_rng=None):
    rng_enc = rng_dec = None
    if dropout_rng is not None:
      rng_enc, rng_dec = jax.random.split(dropout_rng)
    memory = self.encode(src, rng_enc)
    c = memory["context"]                                            # (B, H)
    T = tgt_in.shape[1]
    e = dropout(self.tgt_embed(tgt_in), self.dropout_rate, rng_dec)  # (B, T, E)
    c_t = jnp.broadcast_to(c[:, None, :], (c.shape[0], T, c.shape[1]))
    _, s = rnn.scan(self.decoder, jnp.concatenate([e, c_t], axis=-1),
                    self.init_decode_state(memory))                 # (B, T, H)
    return self.readout(self._features(s, e, c_t)), {}
