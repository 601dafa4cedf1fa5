"""Models by name: ``model.name`` -> the model's class.

Each class takes its frozen hyperparameter dataclass (``cls.config_class``,
built from a config by :mod:`attention_jax.model_setup`) and ``rngs``.
"""

from __future__ import annotations

from flax import nnx

from attention_jax.models import gpt, seq2seq, sequence, transformer

MODELS = {
  "rnn_encdec": seq2seq.RNNEncoderDecoder,  # Cho et al. 2014
  "seq2seq_lstm": seq2seq.Seq2SeqLSTM,  # Sutskever et al. 2014
  "rnnsearch": seq2seq.RNNSearch,  # Bahdanau et al. 2014
  "luong": seq2seq.Luong,  # Luong et al. 2015
  "transformer": transformer.Transformer,  # Vaswani et al. 2017
  "gpt": gpt.GPT,
  "sequence_rnn": sequence.SequenceRNN,  # long-range tasks (data.long_range)
}

# Models that read the long-range tasks' batches (``inputs`` -> outputs).
SEQUENCE_MODELS = ("sequence_rnn",)

_BY_CONFIG_CLASS = {cls.config_class: cls for cls in MODELS.values()}


def make_from_hparams(hparams, *, seed: int) -> nnx.Module:
  """The model whose dataclass ``hparams`` is, its parameters drawn from ``seed``."""
  return _BY_CONFIG_CLASS[type(hparams)](hparams, rngs=nnx.Rngs(params=seed))
