"""Models by name: ``config.model.name`` -> constructor.

A constructor takes ``(config, src_vocab_size, tgt_vocab_size, *, rngs)``.
"""

from __future__ import annotations

from flax import nnx

from attention_jax.models import gpt, seq2seq, transformer

MODELS = {
    "rnn_encdec": seq2seq.RNNEncoderDecoder,     # Cho et al. 2014
    "seq2seq_lstm": seq2seq.Seq2SeqLSTM,         # Sutskever et al. 2014
    "rnnsearch": seq2seq.RNNSearch,              # Bahdanau et al. 2014
    "luong": seq2seq.Luong,                      # Luong et al. 2015
    "transformer": transformer.Transformer,      # Vaswani et al. 2017
    "gpt": gpt.GPT,
}


def build_model(config, src_vocab_size: int, tgt_vocab_size: int,
                seed: int | None = None) -> nnx.Module:
  cls = MODELS[config.model.name]
  seed = config.seed if seed is None else seed
  return cls(config, src_vocab_size, tgt_vocab_size, rngs=nnx.Rngs(params=seed))
