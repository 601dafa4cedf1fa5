"""Cho et al. 2014, "Learning Phrase Representations using RNN Encoder–Decoder
for Statistical Machine Translation" (arXiv:1406.1078): the RNN
encoder–decoder with gated recurrent units, WMT'14 English→French.

  python -m experiments.run --config configs/papers/cho2014.py --workdir W
  python -m experiments.run --config configs/papers/cho2014.py:tiny --workdir W

The paper scored phrase pairs inside a phrase-based system; here the same
network is trained and evaluated as a stand-alone translator (as Bahdanau et
al. 2014 did with "RNNencdec"). Needs ``wmt14_translate/fr-en`` prepared in
the TFDS data dir (network access once). ``tiny``: synthetic ``reverse``, a
few steps, for tests.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import make_tiny, parse_arg  # noqa: E402

from attention_jax.config import base_config  # noqa: E402


def get_config(arg=None):
  _, tiny = parse_arg(arg, path="configs/papers/cho2014.py")
  c = base_config()
  c.seed = 0
  # Model: Section 2.2 (encoder–decoder), 2.3 (the gated hidden unit, eqs. 5-8).
  c.model.name = "rnn_encdec"
  c.model.cell = "gru"
  c.model.gru_reset_after = False   # eq. 7: reset gate before the recurrent matmul
  # Sizes as we read Appendix A.1: 1000 hidden units; rank-100 word embedding
  # matrices; a maxout output layer (eq. 12) of 500 units, each pooling 2.
  c.model.hidden_size = 1000
  c.model.embed_dim = 100
  c.model.readout = "maxout"
  c.model.readout_dim = 500
  # Data: Section 4.1, WMT'14 English→French; 15,000 most frequent words per side.
  c.data.task = "tfds:wmt14_translate/fr-en"
  c.data.source_lang = "en"
  c.data.target_lang = "fr"
  c.data.tokenizer = "word"
  c.data.max_vocab = 15000          # Section 4.1
  c.data.max_length = 50            # not stated for the RNN (phrase pairs); a choice
  c.data.overlong = "drop"
  # Training: Appendix A.1, Adadelta (ρ = 0.95, ε = 1e-6: train.make_optimizer),
  # minibatches of 64 phrase pairs. The number of updates is not given (about
  # three days of training); 300k is our choice.
  c.train.optimizer = "adadelta"
  c.train.learning_rate = 1.0
  c.train.schedule = "constant"
  c.train.warmup_steps = 0
  c.train.batch_size = 64
  c.train.steps = 300_000
  c.train.grad_clip_norm = 1.0      # not stated in Cho et al.; as Bahdanau et al. B.2
  c.train.log_every_steps = 200
  c.eval.every_steps = 10_000
  c.eval.batch_size = 64
  c.eval.beam_size = 10             # not stated for stand-alone decoding; a choice
  c.eval.max_length_a = 1.5
  c.eval.max_length_b = 10.0
  c.checkpoint.every_steps = 10_000
  return make_tiny(c) if tiny else c
