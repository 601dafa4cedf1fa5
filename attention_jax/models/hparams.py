"""The models' hyperparameters: one frozen dataclass per model, its fields what the model reads.

A field is the ``model.*`` config key of the same name, except *context* fields
(:func:`context`: vocabulary sizes, facts of the data task) that the caller
fills in. A key read only in some settings says when (:func:`read_when`:
``readout_dim`` with the maxout readout only); :func:`keys_read` lists the keys
a value reads, and the config's refusal of ignored keys is derived from it.
The dataclasses are built from a config at one boundary,
:func:`attention_jax.model_setup.model_hparams`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

_CONTEXT = "context"
_READ_WHEN = "read_when"


def context() -> Any:
  """A field filled by the caller, not a ``model.*`` key (no default)."""
  return dataclasses.field(metadata={_CONTEXT: True})


def read_when(predicate: Callable[[Any], bool], default: Any) -> Any:
  """A ``model.*`` key read only where ``predicate(hparams)`` holds."""
  return dataclasses.field(default=default, metadata={_READ_WHEN: predicate})


def config_keys_of(cls) -> tuple[str, ...]:
  """The ``model.*`` keys that are fields of ``cls`` (read in some setting)."""
  return tuple(f.name for f in dataclasses.fields(cls) if not f.metadata.get(_CONTEXT))


def context_keys_of(cls) -> tuple[str, ...]:
  """The context fields of ``cls``."""
  return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(_CONTEXT))


def keys_read(hparams) -> tuple[str, ...]:
  """The ``model.*`` keys that ``hparams`` (a model's dataclass) reads."""
  return tuple(
    f.name
    for f in dataclasses.fields(hparams)
    if not f.metadata.get(_CONTEXT) and f.metadata.get(_READ_WHEN, lambda _: True)(hparams)
  )


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
