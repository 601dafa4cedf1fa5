"""Bahdanau, Cho & Bengio 2014, "Neural Machine Translation by Jointly
Learning to Align and Translate" (ICLR 2015): RNNsearch (bidirectional GRU
encoder + additive attention) and RNNencdec (Cho et al. 2014's encoder–decoder),
each trained on sentences of up to 30 or 50 words, WMT'14 English→French.

  python -m experiments.run --config configs/papers/bahdanau2014.py:rnnsearch50 --workdir W
  python -m experiments.run --config configs/papers/bahdanau2014.py:rnnencdec30,tiny --workdir W

ARG: one of ``rnnsearch30``, ``rnnsearch50`` (default), ``rnnencdec30``,
``rnnencdec50``, optionally ``,tiny`` (synthetic ``reverse``, a few steps).
Differences: the paper initializes recurrent matrices orthogonally and the
rest from N(0, 0.01²) (Appendix B.1); ours use the library's initializers.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import make_tiny, parse_arg  # noqa: E402

from attention_jax.config import base_config  # noqa: E402

VARIANTS = ("rnnsearch30", "rnnsearch50", "rnnencdec30", "rnnencdec50")


def get_config(arg=None):
  variant, tiny = parse_arg(arg, VARIANTS, "configs/papers/bahdanau2014.py")
  variant = variant or "rnnsearch50"
  c = base_config()
  c.seed = 0
  # Model: Section 3 and Appendix A. 1000 hidden units in the encoder (each
  # direction for RNNsearch) and decoder, 620-d word embeddings, a deep
  # output with a single maxout hidden layer of 500 units (A.2.2), alignment
  # model with n' = 1000 hidden units (A.1.2, eq. 6).
  c.model.name = "rnnsearch" if variant.startswith("rnnsearch") else "rnn_encdec"
  c.model.cell = "gru"
  c.model.hidden_size = 1000
  c.model.embed_dim = 620
  c.model.readout = "maxout"
  c.model.readout_dim = 500
  if c.model.name == "rnnsearch":   # RNNencdec has no alignment model
    c.model.attention_dim = 1000
  # Data: Section 4.1, WMT'14 English→French; shortlists of the 30,000 most
  # frequent words per language; "-30"/"-50": trained on sentence pairs of up
  # to 30 / 50 words (Section 4.2).
  c.data.task = "tfds:wmt14_translate/fr-en"
  c.data.source_lang = "en"
  c.data.target_lang = "fr"
  c.data.tokenizer = "word"
  c.data.max_vocab = 30_000
  c.data.max_length = 30 if variant.endswith("30") else 50
  c.data.overlong = "drop"
  # Training: Section 4.2 / Appendix B.2 — Adadelta (ρ = 0.95, ε = 1e-6),
  # minibatches of 80 sentences, gradient L2 norm rescaled to at most 1;
  # about 5 days of training. The update count is not given: 370k is our
  # choice.
  c.train.optimizer = "adadelta"
  c.train.learning_rate = 1.0
  c.train.schedule = "constant"
  c.train.warmup_steps = 0
  c.train.batch_size = 80
  c.train.grad_clip_norm = 1.0
  c.train.steps = 370_000
  c.train.log_every_steps = 200
  c.eval.every_steps = 10_000
  c.eval.batch_size = 80
  # Decoding: Section 4.2, beam search; the beam width is not given in the
  # paper (12 here, as Sutskever et al. 2014).
  c.eval.beam_size = 12
  c.checkpoint.every_steps = 10_000
  return make_tiny(c) if tiny else c
