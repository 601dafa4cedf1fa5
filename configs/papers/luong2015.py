"""Luong, Pham & Manning 2015, "Effective Approaches to Attention-based Neural
Machine Translation" (EMNLP 2015): stacked LSTMs with global attention
("general" score) and input feeding, WMT'14 English→German.

  python -m experiments.run --config configs/papers/luong2015.py --workdir W
  python -m experiments.run --config configs/papers/luong2015.py:tiny --workdir W

Differences: the paper's best single model uses *local-p* attention; the
``luong`` model here implements global attention (Section 3.1) with the
``general`` score (eq. 8) and input feeding (Section 3.3). The paper halves
the learning rate every epoch after epoch 5 (after 8 with dropout), which no
schedule here expresses: a cosine decay over the same number of updates is
used; its SGD has no momentum while ``train.optimizer = "sgd"`` adds 0.9, so
the peak rate is 0.1 (the same effective step as 1.0). ``tiny``: synthetic
``reverse``, a few steps, for tests.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import make_tiny, parse_arg  # noqa: E402

from attention_jax.config import base_config  # noqa: E402


def get_config(arg=None):
  _, tiny = parse_arg(arg, path="configs/papers/luong2015.py")
  c = base_config()
  c.seed = 0
  # Model: Section 4.1, "stacking LSTM models have 4 layers, each with 1000
  # cells, and 1000-dimensional embeddings"; global attention (3.1), general
  # score (eq. 8), input feeding (3.3); reversed source (4.1, after Sutskever).
  c.model.name = "luong"
  c.model.num_layers = 4
  c.model.hidden_size = 1000
  c.model.embed_dim = 1000
  c.model.attention_score = "general"
  c.model.input_feeding = True
  c.model.reverse_source = True
  c.model.dropout = 0.2             # Section 4.1: dropout 0.2 for the dropout models
  # Data: Section 4.1, WMT'14 English→German (4.5M pairs), the 50K most frequent
  # words per language, pairs longer than 50 words filtered out.
  c.data.task = "tfds:wmt14_translate/de-en"
  c.data.source_lang = "en"
  c.data.target_lang = "de"
  c.data.tokenizer = "word"
  c.data.max_vocab = 50_000
  c.data.max_length = 50
  c.data.overlong = "drop"
  # Training: Section 4.1 — SGD, minibatch 128, gradient norm rescaled to 5
  # whenever it exceeds 5, 12 epochs for the dropout models.
  c.train.optimizer = "sgd"
  c.train.learning_rate = 0.1
  c.train.schedule = "cosine"
  c.train.warmup_steps = 0
  c.train.end_lr_fraction = 0.0
  c.train.batch_size = 128
  c.train.grad_clip_norm = 5.0
  c.train.steps = 420_000           # ≈ 12 epochs of 4.5M pairs at batch 128
  c.train.log_every_steps = 200
  c.eval.every_steps = 10_000
  c.eval.batch_size = 128
  c.eval.beam_size = 10             # not stated in Section 4; a choice
  c.checkpoint.every_steps = 10_000
  return make_tiny(c) if tiny else c
