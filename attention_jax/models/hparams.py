"""The models' hyperparameters: one frozen dataclass per model, its fields what the model reads.

A field is the ``model.*`` key of the same name, except context fields
(vocabulary sizes, facts of the data task); the field kinds are those of
:mod:`attention_jax.config_fields`. The dataclasses are built from a config at one boundary,
:func:`attention_jax.model_setup.model_hparams`.
"""

from __future__ import annotations

import dataclasses

from attention_jax.config_fields import context, read_when


@dataclasses.dataclass(frozen=True, kw_only=True)
class Recurrent:
  """What every recurrent model reads."""

  src_vocab_size: int = context()  # source vocabulary (specials included)
  tgt_vocab_size: int = context()  # target vocabulary (specials included)
  embed_dim: int = 32  # token embedding width; small: the synthetic tasks have ~10 symbols
  hidden_size: int = 128  # recurrent state width (the bottleneck of rnn_encdec)
  dropout: float = 0.0  # dropout on embeddings and between layers; none for the small tasks
  # The scan's execution (attention_jax.rnn.scan); the same math either way.
  rnn_hoist_input_projection: str = "auto"  # auto | true | false; auto: the backend's default
  rnn_unroll: int = 0  # lax.scan unroll; 0: the backend's default
  rnn_backward: str = "auto"  # auto | autodiff | fused (custom VJP); auto: by backend and batch


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecurrentEncoderDecoder(Recurrent):
  """What every recurrent encoder-decoder adds: its output layer."""

  readout: str = "linear"  # linear | maxout (Cho et al. 2014, eq. 12); linear: fewer knobs
  readout_dim: int = read_when(lambda hp: hp.readout == "maxout", 0)  # maxout units; 0: hidden_size
