"""Models by name: ``config.model.name`` -> constructor.

A constructor takes ``(config, src_vocab_size, tgt_vocab_size, *, rngs)``.
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


def config_keys(config) -> tuple[str, ...]:
  """The ``model.*`` keys (without the prefix) that ``config.model.name`` reads."""
  return ("name", *MODELS[config.model.name].config_keys(config))


def build_model(
  config, src_vocab_size: int, tgt_vocab_size: int, seed: int | None = None
) -> nnx.Module:
  cls = MODELS[config.model.name]
  seed = config.seed if seed is None else seed
  return cls(config, src_vocab_size, tgt_vocab_size, rngs=nnx.Rngs(params=seed))
