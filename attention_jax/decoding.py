"""Autoregressive decoding, compiled: one ``lax.scan`` over output positions."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attention_jax.data.vocab import BOS, EOS, PAD


def greedy_decode(model, src: jax.Array, max_length: int
                  ) -> tuple[jax.Array, jax.Array | None]:
  """Greedy search: y_t = argmax p(y | y_<t, x).

  Returns ``tokens [B, max_length]`` (PAD after each sequence's EOS) and the
  attention weights ``[B, max_length, S]`` when the model has any.
  """
  B = src.shape[0]
  memory = model.encode(src)
  state = model.init_decode_state(memory)

  def body(carry, _):
    state, token, done = carry
    logits, state, attention = model.decode_step(memory, state, token)
    nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    nxt = jnp.where(done, PAD, nxt)
    done = done | (nxt == EOS)
    return (state, nxt, done), (nxt, attention)

  init = (state, jnp.full((B,), BOS, jnp.int32), jnp.zeros((B,), bool))
  _, (tokens, attention) = jax.lax.scan(body, init, None, length=max_length)
  tokens = tokens.T                                            # (B, L)
  if attention is not None:
    attention = jnp.swapaxes(attention, 0, 1)                  # (B, L, S)
  return tokens, attention
