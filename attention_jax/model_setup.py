"""The one boundary between a config and the models.

:func:`model_hparams` builds the chosen model's frozen hyperparameter dataclass
(``attention_jax.models``) from ``config.model``, the data's vocabulary sizes
and the facts of the data task the model needs; nothing below it sees the
config. :func:`model_keys_read` derives the ``model.*`` keys a config's model
reads from that dataclass's fields (validation refuses the others).
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from attention_jax import config_fields, data, models
from attention_jax.data import long_range


def _long_range_fact(name: str, missing: Any):
  """The long-range task's spec field ``name`` (``missing`` for another task)."""

  def fact(config):
    task = config.data.task
    return getattr(long_range.spec(task), name) if task in long_range.TASKS else missing

  return fact


# Context fields (not model.* keys) -> how a config gives them.
_CONTEXT = {
  # gpt: the task is sequence to sequence (else a language model; another
  # task is named by validation).
  "seq2seq": lambda config: (
    data.is_known_task(config.data.task)
    and getattr(data.task_class(config.data.task), "objective", None) == "seq2seq"
  ),
  # sequence_rnn: the long-range task's output kind and real input channels.
  "output_kind": _long_range_fact("output", ""),
  "input_channels": _long_range_fact("input_channels", 0),
}


def model_hparams(config, src_vocab_size: int, tgt_vocab_size: int) -> Any:
  """The frozen hyperparameters of ``config.model.name`` (its ``config_class``)."""
  cls = models.MODELS[config.model.name].config_class
  given = {"src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size}
  return config_fields.from_section(
    cls, config.model, lambda key: given[key] if key in given else _CONTEXT[key](config)
  )


def make_model(
  config, src_vocab_size: int, tgt_vocab_size: int, seed: int | None = None
) -> nnx.Module:
  """The model of ``config`` for these vocabularies; parameters from ``seed``
  (default ``config.seed``)."""
  hparams = model_hparams(config, src_vocab_size, tgt_vocab_size)
  return models.make_from_hparams(hparams, seed=config.seed if seed is None else seed)


def model_keys_read(config) -> tuple[str, ...]:
  """The ``model.*`` keys (without the prefix) that ``config.model.name`` reads.

  KeyError for an unknown model.
  """
  return ("name", *config_fields.keys_read(model_hparams(config, 0, 0)))
