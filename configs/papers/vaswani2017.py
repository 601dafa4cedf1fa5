"""Vaswani et al. 2017, "Attention Is All You Need" (NeurIPS 2017): the base
Transformer, WMT'14 English→German.

  python -m experiments.run --config configs/papers/vaswani2017.py --workdir W
  python -m experiments.run --config configs/papers/vaswani2017.py:tiny --workdir W

Differences: the paper batches by tokens (~25,000 source and 25,000 target
tokens per step, Section 5.1) — here 768 sentence pairs per step is our
approximation; its byte-pair vocabulary of ~37,000 tokens is shared by both
languages, here ``sentencepiece`` builds one model per side; its Adam uses
β2 = 0.98, ε = 1e-9 (Section 5.3) while ``train.optimizer = "adam"`` keeps
optax's defaults (0.999, 1e-8). ``tiny``: synthetic ``reverse``, a few
steps, for tests.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import make_tiny, parse_arg  # noqa: E402

from attention_jax.config import base_config  # noqa: E402


def get_config(arg=None):
  _, tiny = parse_arg(arg, path="configs/papers/vaswani2017.py")
  c = base_config()
  c.seed = 0
  # Model: Section 3 / Table 3 "base": N = 6 layers per stack, d_model = 512,
  # d_ff = 2048, h = 8 heads; post-layer-norm residuals (3.1: LayerNorm(x +
  # Sublayer(x))); shared embeddings and pre-softmax weights (3.4);
  # P_drop = 0.1 (5.4).
  c.model.name = "transformer"
  c.model.num_layers = 6
  c.model.hidden_size = 512
  c.model.mlp_dim = 2048
  c.model.num_heads = 8
  c.model.pre_ln = False
  c.model.tie_embeddings = True
  c.model.dropout = 0.1
  c.model.attention_dropout = 0.0   # not in the paper (tensor2tensor adds it)
  c.model.max_positions = 256
  # Data: Section 5.1, WMT'14 English→German (4.5M pairs), byte-pair encoding
  # with ~37,000 tokens.
  c.data.task = "tfds:wmt14_translate/de-en"
  c.data.source_lang = "en"
  c.data.target_lang = "de"
  c.data.tokenizer = "sentencepiece"
  c.data.sp_vocab_size = 37_000
  c.data.max_length = 128
  c.data.overlong = "drop"
  # Training: Section 5.3, eq. 3 — lrate = d_model^-0.5 · min(step^-0.5,
  # step · warmup^-1.5), warmup 4000: the rsqrt schedule peaks at
  # 512^-0.5 · 4000^-0.5 ≈ 6.99e-4. Section 5.2: base models 100,000 steps.
  # Section 5.4: label smoothing 0.1. No gradient clipping is mentioned.
  c.train.optimizer = "adam"
  c.train.schedule = "rsqrt"
  c.train.learning_rate = 512 ** -0.5 * 4000 ** -0.5
  c.train.warmup_steps = 4000
  c.train.steps = 100_000
  c.train.batch_size = 768
  c.train.label_smoothing = 0.1
  c.train.grad_clip_norm = 0.0
  c.train.log_every_steps = 200
  c.eval.every_steps = 10_000
  c.eval.batch_size = 128
  # Decoding: Section 6.1 — beam size 4, length penalty α = 0.6, maximum output
  # length input length + 50.
  c.eval.beam_size = 4
  c.eval.length_penalty = 0.6
  c.eval.max_length_a = 1.0
  c.eval.max_length_b = 50.0
  c.checkpoint.every_steps = 10_000
  return make_tiny(c) if tiny else c
