"""A decoder-only Transformer language model (GPT; Radford et al. 2018, 2019).

A stack of causal self-attention blocks over token + learned position
embeddings, predicting the next token:

    h_0 = W_e[u] + W_p                                  (Radford et al. 2018, eq. 2)
    h_l = block(h_{l-1}),  l = 1…L   (masked multi-head self-attention, FFN)
    P(u_t | u_<t) = softmax(h_L W_eᵀ)_t                 (weight tying: output = W_eᵀ)

GPT-2 (Radford et al. 2019) moved layer normalization to the input of each
sub-block and added one after the last block: ``model.pre_ln = True`` (the
default); ``False`` gives GPT-1's post-LN. The MLP uses GELU.

``model.scan_layers`` runs the L blocks in training as one ``lax.scan`` over
their stacked parameters: the same function (tested), compiled once instead
of L times — compile time that does not grow with depth (GPT-2-medium's 24
blocks), at the cost of one copy of the block parameters per step.

``__call__(tokens [B, T]) -> logits [B, T, V]`` for training;
``init_cache`` / ``decode`` run t new tokens at a time through per-layer KV
caches (prompt prefill with t = prompt length, then t = 1 per sampled token;
the sampling loop is ``attention_jax.decoding.sample_lm``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from attention_jax.models.layers import Embed, dropout
from attention_jax.models.transformer import STACK_KEYS, Block, _key


class GPT(nnx.Module):
  """Decoder-only causal LM for ``model.name = "gpt"``; vocabulary = target vocab."""

  @staticmethod
  def config_keys(config) -> tuple[str, ...]:
    """The ``model.*`` keys read (the output layer is always the token
    embedding transposed: no ``tie_embeddings``)."""
    del config
    return (*STACK_KEYS, "scan_layers")

  def __init__(self, config, src_vocab_size: int, tgt_vocab_size: int, *,
               rngs: nnx.Rngs):
    del src_vocab_size
    m = config.model
    D = m.hidden_size
    self.max_positions, self.dropout_rate = m.max_positions, m.dropout
    init = nnx.initializers.normal(0.02)
    self.tok_embed = Embed(tgt_vocab_size, D, embedding_init=init, rngs=rngs)
    self.pos_embed = Embed(m.max_positions, D, embedding_init=init, rngs=rngs)
    self.blocks = nnx.List([
        Block(D, m.num_heads, m.mlp_dim or 4 * D, cross=False, causal=True,
              pre_ln=m.pre_ln, dropout_rate=m.dropout,
              attention_dropout=m.attention_dropout, implementation=m.attention_impl,
              activation="gelu", rngs=rngs)
        for _ in range(m.num_layers)])
    self.final_norm = nnx.LayerNorm(D, rngs=rngs) if m.pre_ln else None
    self.scan_layers = m.scan_layers

  def _embed(self, tokens: jax.Array, offset=0) -> jax.Array:
    pos = jnp.arange(tokens.shape[1]) + offset
    return self.tok_embed(tokens) + self.pos_embed(pos)[None]      # (B, T, D)

  def _logits(self, h: jax.Array) -> jax.Array:
    if self.final_norm is not None:
      h = self.final_norm(h)
    return self.tok_embed.attend(h)                                 # (B, T, V) tied

  def __call__(self, tokens: jax.Array, dropout_rng=None) -> jax.Array:
    """tokens [B, T] (T ≤ max_positions) -> next-token logits [B, T, V]."""
    h = dropout(self._embed(tokens), self.dropout_rate, _key(dropout_rng, 0))
    if self.scan_layers:
      return self._logits(self._scan_blocks(h, dropout_rng))
    for i, block in enumerate(self.blocks):
      h, _ = block(h, rng=_key(dropout_rng, i + 1))
    return self._logits(h)

  def _scan_blocks(self, h: jax.Array, dropout_rng) -> jax.Array:
    """The blocks as one ``lax.scan``: parameters stacked along a new leading
    axis [L, ...], block i keyed by ``fold_in(rng, i + 1)`` as in the loop."""
    graphdef = nnx.graphdef(self.blocks[0])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs),
                           *[nnx.state(b) for b in self.blocks])

    def body(h, inputs):
      state, i = inputs
      h, _ = nnx.merge(graphdef, state)(h, rng=_key(dropout_rng, i))
      return h, None

    h, _ = jax.lax.scan(body, h, (stacked, jnp.arange(1, len(self.blocks) + 1)))
    return h

  def init_cache(self, batch_size: int, max_length: int | None = None) -> list:
    L = max_length or self.max_positions
    dtype = self.tok_embed.embedding[...].dtype    # the compute dtype
    return [b.self_attn.init_cache(batch_size, L, dtype) for b in self.blocks]

  def decode(self, tokens: jax.Array, cache: list):
    """tokens [B, t] at positions index…index+t-1 -> (logits [B, t, V], cache)."""
    h = self._embed(tokens, offset=cache[0]["index"])
    new = []
    for block, c in zip(self.blocks, cache):
      h, c, _ = block.decode(h, c)
      new.append(c)
    return self._logits(h), new
