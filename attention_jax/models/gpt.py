"""A decoder-only Transformer (GPT; Radford et al. 2018, 2019): docs/models.md#gpt.

    h_0 = W_e[u] + W_p                                  (Radford et al. 2018, eq. 2)
    h_l = block(h_{l-1}),  l = 1…L   (masked multi-head self-attention, FFN)
    P(u_t | u_<t) = softmax(h_L W_eᵀ)_t                 (weight tying: output = W_eᵀ)

A language model on ``text``; on the synthetic tasks a decoder-only seq2seq model over
``x_1 … x_S BOS y_1 … y_T``, the loss on the target tokens only (Press et al. 2022).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from attention_jax import attention
from attention_jax import positions as positions_lib
from attention_jax.config_fields import context
from attention_jax.data.vocab import PAD
from attention_jax.models.layers import Embed, dropout
from attention_jax.models.transformer import Block, StackConfig, _key


@dataclasses.dataclass(frozen=True, kw_only=True)
class GPTConfig(StackConfig):
  """``gpt``: the output layer is always the token embedding transposed (no
  ``tie_embeddings``)."""

  seq2seq: bool = context()  # the task's objective is seq2seq: source, separator, target
  scan_layers: bool = False  # run the blocks as one lax.scan (compiles once); off: simpler HLO


class GPT(nnx.Module):
  """Decoder-only causal Transformer for ``model.name = "gpt"``: a language
  model on ``text``, a decoder-only seq2seq model on the synthetic tasks."""

  config_class = GPTConfig

  def __init__(self, hp: GPTConfig, *, rngs: nnx.Rngs):
    D = hp.hidden_size
    self.max_positions, self.dropout_rate = hp.max_positions, hp.dropout
    self.is_seq2seq = hp.seq2seq
    self.tgt_vocab_size = hp.tgt_vocab_size
    vocab = hp.tgt_vocab_size + (hp.src_vocab_size if self.is_seq2seq else 0)
    self.position = positions_lib.scheme_for(hp.position, "gpt")
    init = nnx.initializers.normal(0.02)
    self.tok_embed = Embed(vocab, D, embedding_init=init, rngs=rngs)
    self.pos_embed = (
      Embed(hp.max_positions, D, embedding_init=init, rngs=rngs)
      if self.position == "learned"
      else None
    )
    self.blocks = nnx.List(
      [
        Block.from_hparams(
          hp, cross=False, causal=True, position=self.position, activation="gelu", rngs=rngs
        )
        for _ in range(hp.num_layers)
      ]
    )
    self.final_norm = nnx.LayerNorm(D, rngs=rngs) if hp.pre_ln else None
    self.scan_layers = hp.scan_layers

  def _embed(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
    """W_e[tokens] + the position embedding of ``positions [B|1, T]``."""
    h = self.tok_embed(tokens)  # (B, T, D)
    if self.position == "learned":
      h = h + self.pos_embed(positions)
    elif self.position == "sinusoidal":
      h = h + positions_lib.sinusoidal(positions, h.shape[-1]).astype(h.dtype)
    return h

  def _logits(self, h: jax.Array) -> jax.Array:
    if self.final_norm is not None:
      h = self.final_norm(h)
    return self.tok_embed.attend(h)  # (B, T, V) tied

  def _stack(self, h, dropout_rng, mask=None, positions=None) -> jax.Array:
    if self.scan_layers:
      return self._scan_blocks(h, dropout_rng, mask, positions)
    for i, block in enumerate(self.blocks):
      h, _ = block(h, self_mask=mask, rng=_key(dropout_rng, i + 1), positions=positions)
    return h

  def __call__(self, tokens: jax.Array, tgt_in: jax.Array | None = None, dropout_rng=None):
    """Language model: tokens [B, T] (T ≤ max_positions with learned
    positions) -> next-token logits [B, T, V]. Seq2seq (``tgt_in`` given):
    src [B, S], tgt_in [B, T+1] -> (logits [B, T+1, V_tgt], {})."""
    if tgt_in is not None:
      return self._seq2seq(tokens, tgt_in, dropout_rng), {}
    positions = jnp.arange(tokens.shape[1])[None]
    h = dropout(self._embed(tokens, positions), self.dropout_rate, _key(dropout_rng, 0))
    return self._logits(self._stack(h, dropout_rng))

  def _scan_blocks(self, h: jax.Array, dropout_rng, mask=None, positions=None) -> jax.Array:
    """The blocks as one ``lax.scan``: parameters stacked along a new leading
    axis [L, ...], block i keyed by ``fold_in(rng, i + 1)`` as in the loop. One
    block compiled instead of L (compile time does not grow with depth), at the
    cost of one copy of the block parameters per step."""
    graphdef = nnx.graphdef(self.blocks[0])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[nnx.state(b) for b in self.blocks])

    def body(h, inputs):
      state, i = inputs
      h, _ = nnx.merge(graphdef, state)(
        h, self_mask=mask, rng=_key(dropout_rng, i), positions=positions
      )
      return h, None

    h, _ = jax.lax.scan(body, h, (stacked, jnp.arange(1, len(self.blocks) + 1)))
    return h

  def init_cache(self, batch_size: int, max_length: int | None = None) -> list:
    L = max_length or self.max_positions
    dtype = self.tok_embed.embedding[...].dtype  # the compute dtype
    return [b.self_attn.init_cache(batch_size, L, dtype) for b in self.blocks]

  def decode(self, tokens: jax.Array, cache: list, *, positions=None, key_valid=None):
    """tokens [B, t] into slots index…index+t-1 -> (logits [B, t, V], cache).

    ``positions [B|1, t]``: the tokens' positions (default: their slots);
    ``key_valid [B, L]``: cache slots that may be attended (default: all)."""
    if positions is None:
      positions = (cache[0]["index"] + jnp.arange(tokens.shape[1]))[None]
    mask = None if key_valid is None else key_valid[:, None, :]  # (B, 1, L)
    h = self._embed(tokens, positions)
    new = []
    for block, c in zip(self.blocks, cache, strict=True):
      h, c, _ = block.decode(h, c, self_mask=mask, positions=positions)
      new.append(c)
    return self._logits(h), new

  # ------------------------------------------------------------------
  # Sequence to sequence, decoder-only: x_1 … x_S BOS y_1 … y_T

  def source_ids(self, src: jax.Array) -> jax.Array:
    """Source ids in the joint vocabulary (after the target's); PAD stays 0."""
    return jnp.where(src != PAD, src + self.tgt_vocab_size, PAD)

  def _seq2seq(self, src, tgt_in, dropout_rng):
    """Teacher forcing on [source; BOS y_1 … y_T]: the logits at the target
    positions, over the target vocabulary."""
    S = src.shape[1]
    tokens = jnp.concatenate([self.source_ids(src), tgt_in], axis=1)  # (B, S+T+1)
    valid = jnp.concatenate([src != PAD, jnp.ones(tgt_in.shape, bool)], axis=1)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)  # real tokens
    mask = attention.padding_mask(None, valid)  # (B, 1, 1, ·)
    h = dropout(self._embed(tokens, positions), self.dropout_rate, _key(dropout_rng, 0))
    h = self._stack(h, dropout_rng, mask, positions)
    return self._logits(h[:, S:])[..., : self.tgt_vocab_size]  # (B, T+1, V_tgt)

  def decode_capacity(self, source_width: int) -> int:
    """Target tokens the KV cache (``model.max_positions`` slots) holds after
    a source of ``source_width`` slots; the searches of
    ``attention_jax.decoding`` cap their output length to it."""
    return self.max_positions - source_width

  def encode(self, src: jax.Array, dropout_rng=None) -> dict:
    """The source through the KV caches (prefill): src [B, S] -> memory."""
    del dropout_rng
    B, S = src.shape
    valid = src != PAD
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    key_valid = jnp.concatenate(
      [valid, jnp.ones((B, self.max_positions - S), bool)], axis=1
    )  # (B, L)
    _, caches = self.decode(
      self.source_ids(src), self.init_cache(B), positions=positions, key_valid=key_valid
    )
    return {"caches": caches, "key_valid": key_valid, "length": valid.sum(axis=1).astype(jnp.int32)}

  def init_decode_state(self, memory) -> dict:
    return {"caches": memory["caches"], "position": memory["length"]}

  def decode_step(self, memory, state, token: jax.Array):
    """token [B] (BOS first) -> (logits [B, V_tgt], state, None)."""
    position = state["position"]
    logits, caches = self.decode(
      token[:, None], state["caches"], positions=position[:, None], key_valid=memory["key_valid"]
    )
    return (logits[:, 0, : self.tgt_vocab_size], {"caches": caches, "position": position + 1}, None)
