"""Recurrent models for the long-range tasks (docs/vanishing.md#the-model).

``SequenceRNN``: one recurrent layer (``model.cell``) and a head on its last state (where
gradients vanish: Bengio et al. 1994; Pascanu et al. 2013), or with ``model.pooling =
"attention"`` also on an attention-weighted sum of every state, a short path from each step
to the output (Bahdanau et al. 2014, eq. 6, a learned query in place of the decoder state;
per step, causal Luong et al. 2015 "general" scores):

    e_t = vᵀ tanh(W h_t + b),   α = softmax(e),   c = Σ_t α_t h_t,   y = head([c; h_T])
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from attention_jax import rnn
from attention_jax.attention import masked_softmax
from attention_jax.config_fields import context, read_when
from attention_jax.models.hparams import Recurrent
from attention_jax.models.layers import Embed, dropout


def add_to_state(carry, p: jax.Array):
  """``carry`` with ``p`` added to its hidden state h (LSTM: ``(c, h + p)``)."""
  if isinstance(carry, (tuple, list)):
    return (*carry[:-1], carry[-1] + p)
  return carry + p


class ProbedCell:
  """A cell whose step adds a per-step probe to its hidden state.

  It runs under the unchanged ``rnn.scan``: the probe travels with the input
  (``x`` is ``[x_t; p_t]``) and ``step`` returns ``carry_t`` with ``p_t``
  added to ``h_t``.
  """

  def __init__(self, cell, in_features: int):
    self.cell = cell
    self.in_features = in_features

  def initialize_carry(self, batch_shape):
    return self.cell.initialize_carry(batch_shape)

  def input_projection(self, x):
    return (self.cell.input_projection(x[..., : self.in_features]), x[..., self.in_features :])

  def step(self, carry, xp):
    xp, p = xp
    return add_to_state(self.cell.step(carry, xp), p)

  def output(self, carry):
    return self.cell.output(carry)


POOLINGS = ("last", "attention")  # model.pooling


@dataclasses.dataclass(frozen=True, kw_only=True)
class SequenceRNNConfig(Recurrent):
  """``sequence_rnn``: one recurrent layer (no ``num_layers``) and a head."""

  output_kind: str = context()  # the task's output: regression | classification | per_step
  input_channels: int = context()  # real input channels per step; 0: token ids (embedded)
  cell: str = "gru"  # gru | lstm | elman: the cells whose gradients the instruments compare
  pooling: str = "last"  # last | attention: what the head reads; last: the vanishing setting
  embed_dim: int = read_when(lambda hp: not hp.input_channels, 32)  # token inputs only
  gru_reset_after: bool = read_when(lambda hp: hp.cell == "gru", False)  # GRU only: cuDNN form


class SequenceRNN(nnx.Module):
  """One recurrent layer and a head; see the module docstring."""

  config_class = SequenceRNNConfig

  def __init__(self, hp: SequenceRNNConfig, *, rngs: nnx.Rngs):
    self.output_kind = hp.output_kind
    self.pooling = hp.pooling
    self.dropout_rate = hp.dropout
    H = self.hidden_size = hp.hidden_size
    if hp.input_channels:
      self.embed = None
      self.in_features = hp.input_channels
    else:
      self.embed = Embed(hp.src_vocab_size, hp.embed_dim, rngs=rngs)
      self.in_features = hp.embed_dim
    options = {"reset_after": hp.gru_reset_after} if hp.cell == "gru" else {}
    self.cell = rnn.make_cell(hp.cell, self.in_features, H, rngs=rngs, **options)
    self.scan_options = rnn.static_layer_options(hp)  # rnn_*
    attend = self.pooling == "attention"
    per_step = self.output_kind == "per_step"
    head_in = 2 * H if attend else H
    self.attn_general = (
      nnx.Linear(H, H, use_bias=False, rngs=rngs)  # W_a
      if attend and per_step
      else None
    )
    self.attn_key = nnx.Linear(H, H, rngs=rngs) if attend and not per_step else None
    self.attn_query = (
      nnx.Linear(H, 1, use_bias=False, rngs=rngs)  # v
      if attend and not per_step
      else None
    )
    out = 1 if self.output_kind == "regression" else hp.tgt_vocab_size
    self.head = nnx.Linear(head_in, out, rngs=rngs)

  def features(self, inputs: jax.Array) -> jax.Array:
    """Input features x_t: ``[B, T, I]``."""
    if self.embed is None:
      return inputs.astype(self.head.kernel[...].dtype)
    return self.embed(inputs)

  def states(self, x: jax.Array, state_probe: jax.Array | None = None):
    """Runs the recurrence over ``x [B, T, I]``. Returns (final carry, hs [B, T, H])."""
    options = dict(self.scan_options)
    if state_probe is None:
      return rnn.scan(self.cell, x, **options)
    if options["backward"] == "fused":  # a wrapper cell: autodiff only
      options["backward"] = "auto"
    probed = ProbedCell(self.cell, self.in_features)
    return rnn.scan(probed, jnp.concatenate([x, state_probe.astype(x.dtype)], -1), **options)

  def readout(self, hs: jax.Array, h_last: jax.Array) -> jax.Array:
    """The head over the states: ``hs [B, T, H]``, ``h_last [B, H]``. Per step
    with attention, causal "general" scores (Luong et al. 2015, eq. 8)::

        e_ts = h_tᵀ W_a h_s (s ≤ t),   c_t = Σ_s α_ts h_s,   y_t = head([c_t; h_t])

    else with attention additive scores with a learned query (Yang et al. 2016)."""
    if self.output_kind == "per_step":
      feats = hs  # (B, T, H)
      if self.pooling == "attention":
        T = hs.shape[1]
        e = jnp.einsum("bth,bsh->bts", hs, self.attn_general(hs))  # (B, T, T)
        causal = jnp.tril(jnp.ones((T, T), bool))
        a = masked_softmax(e, causal).astype(hs.dtype)  # softmax in float32
        feats = jnp.concatenate([jnp.einsum("bts,bsh->bth", a, hs), hs], -1)
      return self.head(feats)  # (B, T, V)
    feats = h_last  # (B, H)
    if self.pooling == "attention":
      e = self.attn_query(jnp.tanh(self.attn_key(hs)))[..., 0]  # (B, T)
      a = masked_softmax(e, None).astype(hs.dtype)  # softmax in float32
      feats = jnp.concatenate([jnp.einsum("bt,bth->bh", a, hs), h_last], -1)
    y = self.head(feats)
    return y[..., 0] if self.output_kind == "regression" else y

  def __call__(
    self,
    inputs: jax.Array,
    dropout_rng=None,
    *,
    state_probe: jax.Array | None = None,
    input_probe: jax.Array | None = None,
  ) -> jax.Array:
    """inputs [B, T, C] real or [B, T] token ids -> a scalar [B] (regression),
    logits [B, V] (classification) or [B, T, V] (per step, copy memory).

    For ``attention_jax.gradients``: the zero probe ``state_probe [B, T, H]`` is
    added to ``h_t`` inside the recurrence step (so it flows into step t+1 and
    the head), ``input_probe`` to the input features ``x_t``; the gradient of
    the loss with respect to a probe is ``∂L/∂h_t`` (``∂L/∂x_t``)."""
    x = self.features(inputs)  # (B, T, I)
    if input_probe is not None:
      x = x + input_probe.astype(x.dtype)
    final, hs = self.states(x, state_probe)
    h_last = self.cell.output(final)
    hs = dropout(hs, self.dropout_rate, dropout_rng)
    if dropout_rng is not None:
      dropout_rng = jax.random.fold_in(dropout_rng, 1)
    h_last = dropout(h_last, self.dropout_rate, dropout_rng)
    return self.readout(hs, h_last)
