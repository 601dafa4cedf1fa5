"""The Transformer encoder–decoder (Vaswani et al. 2017): docs/models.md#transformer.

Every layer is attention plus a position-wise FFN(x) = max(0, x W₁ + b₁) W₂ + b₂ (eq. 2),
each wrapped in a residual connection and layer normalization:

    post-LN (the paper, Section 3.1):  x ← LayerNorm(x + Dropout(Sublayer(x)))
    pre-LN  (Xiong et al. 2020):       x ← x + Dropout(Sublayer(LayerNorm(x)))

Encoder layer: self-attention, FFN. Decoder layer: causal self-attention, cross-attention
over the encoder output, FFN. Positions: :mod:`attention_jax.positions`.
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
from attention_jax.models.layers import Embed, dense, dropout

# [T] positions -> [T, dim] sinusoids (Vaswani et al. 2017, Section 3.5).
sinusoidal_positions = positions_lib.sinusoidal


@dataclasses.dataclass(frozen=True, kw_only=True)
class StackConfig:
  """What a stack of Transformer blocks reads (``transformer``, ``gpt``): no
  recurrence (no ``rnn_*``, ``cell``); embeddings are ``hidden_size`` wide."""

  src_vocab_size: int = context()  # source vocabulary (specials included); gpt LM: 0
  tgt_vocab_size: int = context()  # target vocabulary (specials included)
  hidden_size: int = 128  # d_model; small for the synthetic tasks (the paper: 512)
  num_layers: int = 1  # blocks per stack (the paper: 6)
  num_heads: int = 4  # attention heads; hidden_size must divide by it
  mlp_dim: int = 0  # feed-forward width; 0: 4 * hidden_size as in the paper
  pre_ln: bool = True  # True: pre-LN (GPT-2; trains without warm-up); False: post-LN (the paper)
  max_positions: int = 256  # KV-cache length and learned position tables' rows
  attention_impl: str = "auto"  # auto | einsum | xla | cudnn (attention.py); same math
  dropout: float = 0.0  # residual and embedding dropout; none for the small tasks
  attention_dropout: float = 0.0  # dropout on attention weights
  position: str = "auto"  # auto | sinusoidal | learned | rope | alibi | none (positions.py)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TransformerConfig(StackConfig):
  """``transformer``: the encoder-decoder."""

  tie_embeddings: bool = True  # output projection = target embedding transposed (Section 3.4)


def attention_term(scheme: str) -> str | None:
  """The self-attention part of a resolved position scheme (rope, alibi)."""
  return scheme if scheme in positions_lib.ATTENTION_SCHEMES else None


def _key(rng: jax.Array | None, i: int) -> jax.Array | None:
  return None if rng is None else jax.random.fold_in(rng, i)


class FeedForward(nnx.Module):
  """Position-wise FFN(x) = act(x W₁ + b₁) W₂ + b₂ (eq. 2; GPT uses GELU)."""

  def __init__(self, dim: int, hidden: int, *, activation: str = "relu", rngs: nnx.Rngs):
    self.fc1 = nnx.Linear(dim, hidden, rngs=rngs)
    self.fc2 = nnx.Linear(hidden, dim, rngs=rngs)
    self.activation = activation

  def __call__(self, x: jax.Array, dropout_rate: float = 0.0, rng=None) -> jax.Array:
    act = jax.nn.relu if self.activation == "relu" else jax.nn.gelu
    return dense(self.fc2, dropout(act(dense(self.fc1, x)), dropout_rate, rng))


class Block(nnx.Module):
  """One Transformer layer: self-attention, optional cross-attention, FFN.

  Encoder layer: ``cross=False, causal=False``; decoder layer:
  ``cross=True, causal=True``; GPT block: ``cross=False, causal=True``.
  """

  def __init__(
    self,
    dim: int,
    num_heads: int,
    mlp_dim: int,
    *,
    cross: bool,
    causal: bool,
    pre_ln: bool,
    dropout_rate: float,
    attention_dropout: float,
    implementation: str,
    activation: str = "relu",
    position: str | None = None,
    rngs: nnx.Rngs,
  ):
    """``position``: the self-attention's position term (``rope``,
    ``alibi`` or None); the cross-attention never has one."""

    def mha(term):
      return attention.MultiHeadAttention(
        dim,
        num_heads,
        dropout_rate=attention_dropout,
        implementation=implementation,
        position=term,
        rngs=rngs,
      )

    self.self_attn = mha(position)
    self.ln_self = nnx.LayerNorm(dim, rngs=rngs)
    self.cross_attn = mha(None) if cross else None
    self.ln_cross = nnx.LayerNorm(dim, rngs=rngs) if cross else None
    self.ffn = FeedForward(dim, mlp_dim, activation=activation, rngs=rngs)
    self.ln_ffn = nnx.LayerNorm(dim, rngs=rngs)
    self.causal, self.pre_ln = causal, pre_ln
    self.dropout_rate, self.attention_dropout = dropout_rate, attention_dropout

  def _residual(self, x, ln, fn, rng):
    """Pre-LN: x + D(f(LN(x))); post-LN: LN(x + D(f(x))). ``fn`` returns (y, aux)."""
    y, aux = fn(ln(x) if self.pre_ln else x)
    x = x + dropout(y, self.dropout_rate, rng)
    return (x if self.pre_ln else ln(x)), aux

  def _attn_rng(self, rng, i):
    return _key(rng, i) if self.attention_dropout > 0 else None

  @classmethod
  def from_hparams(
    cls, hp, *, cross: bool, causal: bool, position: str, activation: str = "relu", rngs
  ) -> Block:
    """A block of the stack ``hp`` describes (a TransformerConfig or GPTConfig:
    hidden_size, num_heads, mlp_dim, pre_ln, dropout, attention_dropout,
    attention_impl); ``position``: the model's scheme (``attention_term`` picks
    the self-attention's share)."""
    return cls(
      hp.hidden_size,
      hp.num_heads,
      hp.mlp_dim or 4 * hp.hidden_size,
      cross=cross,
      causal=causal,
      pre_ln=hp.pre_ln,
      dropout_rate=hp.dropout,
      attention_dropout=hp.attention_dropout,
      implementation=hp.attention_impl,
      activation=activation,
      position=attention_term(position),
      rngs=rngs,
    )

  def __call__(
    self,
    x: jax.Array,
    *,
    self_mask=None,
    cross_kv=None,
    cross_mask=None,
    rng=None,
    return_weights: bool = False,
    positions=None,
  ):
    """x [B, T, D] -> (x [B, T, D], cross-attention weights [B, N, T, S] or None).
    ``positions [B|1, T]``: for the self-attention's position term."""
    x, _ = self._residual(
      x,
      self.ln_self,
      lambda h: self.self_attn(
        h,
        mask=self_mask,
        is_causal=self.causal,
        dropout_rng=self._attn_rng(rng, 0),
        positions=positions,
      ),
      _key(rng, 1),
    )
    weights = None
    if self.cross_attn is not None:
      x, weights = self._residual(
        x,
        self.ln_cross,
        lambda h: self.cross_attn(
          h,
          mask=cross_mask,
          kv=cross_kv,
          dropout_rng=self._attn_rng(rng, 2),
          return_weights=return_weights,
        ),
        _key(rng, 3),
      )
    x, _ = self._residual(
      x, self.ln_ffn, lambda h: (self.ffn(h, self.dropout_rate, _key(rng, 4)), None), _key(rng, 5)
    )
    return x, weights

  def decode(
    self,
    x: jax.Array,
    cache: dict,
    *,
    cross_kv=None,
    cross_mask=None,
    self_mask=None,
    positions=None,
  ):
    """t new positions x [B, t, D] through the KV cache (no dropout)."""
    box = {}

    def self_fn(h):
      y, box["cache"], _ = self.self_attn.decode(h, cache, mask=self_mask, positions=positions)
      return y, None

    x, _ = self._residual(x, self.ln_self, self_fn, None)
    weights = None
    if self.cross_attn is not None:
      x, weights = self._residual(
        x,
        self.ln_cross,
        lambda h: self.cross_attn(h, mask=cross_mask, kv=cross_kv, return_weights=True),
        None,
      )
    x, _ = self._residual(x, self.ln_ffn, lambda h: (self.ffn(h), None), None)
    return x, box["cache"], weights


class Transformer(nnx.Module):
  """Encoder–decoder Transformer (Vaswani et al. 2017) for ``model.name = "transformer"``.

  ``model.hidden_size`` is d_model, ``model.num_layers`` the number of encoder
  and of decoder layers, ``model.mlp_dim`` the FFN width (0 = 4·d_model),
  ``model.pre_ln`` chooses pre- or post-LN, ``model.tie_embeddings`` shares the
  target embedding with the output projection (Section 3.4),
  ``model.position`` the position scheme (``auto`` = sinusoidal; ``learned``
  tables hold ``model.max_positions`` positions per side; ``none`` is refused:
  an encoder without positions sees a bag of tokens).
  """

  config_class = TransformerConfig

  def __init__(self, hp: TransformerConfig, *, rngs: nnx.Rngs):
    D = hp.hidden_size
    self.dim, self.max_positions = D, hp.max_positions
    self.dropout_rate, self.pre_ln = hp.dropout, hp.pre_ln
    self.num_heads = hp.num_heads
    self.position = positions_lib.scheme_for(hp.position, "transformer")
    if self.position == "none":
      raise ValueError("model.position='none': a Transformer encoder needs positions")
    self.src_embed = Embed(hp.src_vocab_size, D, rngs=rngs)
    self.tgt_embed = Embed(hp.tgt_vocab_size, D, rngs=rngs)
    learned = self.position == "learned"  # fairseq's: N(0, 1/d), added to √d·E
    self.src_pos_embed = Embed(hp.max_positions, D, rngs=rngs) if learned else None
    self.tgt_pos_embed = Embed(hp.max_positions, D, rngs=rngs) if learned else None

    def block(cross):
      return Block.from_hparams(hp, cross=cross, causal=cross, position=self.position, rngs=rngs)

    self.encoder = nnx.List([block(False) for _ in range(hp.num_layers)])
    self.decoder = nnx.List([block(True) for _ in range(hp.num_layers)])
    self.enc_norm = nnx.LayerNorm(D, rngs=rngs) if hp.pre_ln else None
    self.dec_norm = nnx.LayerNorm(D, rngs=rngs) if hp.pre_ln else None
    self.tie = hp.tie_embeddings
    self.out = None if hp.tie_embeddings else nnx.Linear(D, hp.tgt_vocab_size, rngs=rngs)

  def _embed(
    self, table: Embed, tokens: jax.Array, offset=0, positions: Embed | None = None
  ) -> jax.Array:
    """√d·E[tokens] (+ the position embedding of positions offset…offset+T−1:
    sinusoids, or the learned table ``positions``)."""
    T = tokens.shape[1]
    x = table(tokens) * jnp.sqrt(float(self.dim))  # (B, T, D)
    where = jnp.arange(T) + offset
    if self.position == "sinusoidal":
      pos = sinusoidal_positions(where, self.dim)  # float32
    elif self.position == "learned":
      pos = positions(where)
    else:  # rope / alibi: inside self-attention
      return x
    return x + pos.astype(x.dtype)  # in the compute dtype (bf16 stays)

  def _logits(self, y: jax.Array) -> jax.Array:
    if self.dec_norm is not None:
      y = self.dec_norm(y)
    if self.tie:
      return self.tgt_embed.attend(y)  # (B, T, V)
    return self.out(y)

  def encode(self, src: jax.Array, dropout_rng=None) -> dict:
    """src [B, S] -> memory: encoder output, source mask and per-layer cross K/V."""
    src_valid = src != PAD  # (B, S)
    x = dropout(
      self._embed(self.src_embed, src, positions=self.src_pos_embed),
      self.dropout_rate,
      _key(dropout_rng, 0),
    )
    mask = attention.padding_mask(None, src_valid)  # (B, 1, 1, S)
    for i, layer in enumerate(self.encoder):
      x, _ = layer(x, self_mask=mask, rng=_key(dropout_rng, i + 1))
    if self.enc_norm is not None:
      x = self.enc_norm(x)
    cross_kv = [layer.cross_attn.project_kv(x) for layer in self.decoder]
    return {"encoded": x, "src_valid": src_valid, "cross_kv": cross_kv}

  @property
  def decode_positions(self) -> int:
    """Positions the decoder's KV cache holds (``model.max_positions``); the
    searches of ``attention_jax.decoding`` cap their output length to it."""
    return self.max_positions

  def init_decode_state(self, memory, max_length: int | None = None) -> dict:
    B = memory["encoded"].shape[0]
    L = max_length or self.max_positions
    return {
      "caches": [
        layer.self_attn.init_cache(B, L, memory["encoded"].dtype) for layer in self.decoder
      ]
    }

  def decode_step(self, memory, state, token: jax.Array):
    """token [B] -> (logits [B, V], state, cross-attention [B, S] of the last layer)."""
    index = state["caches"][0]["index"]
    y = self._embed(
      self.tgt_embed, token[:, None], offset=index, positions=self.tgt_pos_embed
    )  # (B, 1, D)
    cross_mask = attention.padding_mask(None, memory["src_valid"])
    caches, weights = [], None
    for layer, cache, kv in zip(self.decoder, state["caches"], memory["cross_kv"], strict=True):
      y, cache, weights = layer.decode(y, cache, cross_kv=kv, cross_mask=cross_mask)
      caches.append(cache)
    logits = self._logits(y)[:, 0]
    return logits, {"caches": caches}, weights.mean(axis=1)[:, 0]

  def _teacher_forced(self, src, tgt_in, dropout_rng, all_weights: bool):
    """Decoder output [B, T, D] and the cross-attention weights
    [B, N, T, S] of the last layer (``all_weights``: of every layer)."""
    memory = self.encode(src, _key(dropout_rng, 0))
    y = dropout(
      self._embed(self.tgt_embed, tgt_in, positions=self.tgt_pos_embed),
      self.dropout_rate,
      _key(dropout_rng, 1),
    )
    cross_mask = attention.padding_mask(None, memory["src_valid"])
    n = len(self.decoder)
    weights = []
    for i, (layer, kv) in enumerate(zip(self.decoder, memory["cross_kv"], strict=True)):
      y, w = layer(
        y,
        cross_kv=kv,
        cross_mask=cross_mask,
        rng=_key(dropout_rng, i + 2),
        return_weights=all_weights or i == n - 1,
      )
      weights.append(w)
    return y, weights

  def __call__(self, src: jax.Array, tgt_in: jax.Array, dropout_rng=None):
    """Teacher forcing: (logits [B, T, V], {"attention": [B, T, S]}), the
    attention being the last layer's cross-attention averaged over heads."""
    y, weights = self._teacher_forced(src, tgt_in, dropout_rng, all_weights=False)
    return self._logits(y), {"attention": weights[-1].mean(axis=1)}

  def cross_attention_weights(self, src: jax.Array, tgt_in: jax.Array) -> jax.Array:
    """Teacher-forced cross-attention of every decoder layer and head:
    [B, L, N, T, S] (row t: the weights used to predict target token t)."""
    _, weights = self._teacher_forced(src, tgt_in, None, all_weights=True)
    return jnp.stack(weights, axis=1)
