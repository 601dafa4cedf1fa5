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

from configs import common


def get_config(arg=None):
  _, tiny = common.paper_arg(arg, __file__)
  # Data: Section 5.1, WMT'14 English→German (4.5M pairs), byte-pair encoding
  # with ~37,000 tokens (here: sentencepiece, one model per side).
  c = common.wmt14("de")
  c.data.update(tokenizer="sentencepiece", sp_vocab_size=37_000, max_length=128)
  # Model: Section 3 / Table 3 "base": N = 6 layers per stack, d_model = 512,
  # d_ff = 2048, h = 8 heads; post-layer-norm residuals (3.1: LayerNorm(x +
  # Sublayer(x))); shared embeddings and pre-softmax weights (3.4);
  # P_drop = 0.1 (5.4). No dropout on the attention weights: not in the
  # paper (tensor2tensor adds it).
  c.model.update(
    name="transformer",
    num_layers=6,
    hidden_size=512,
    mlp_dim=2048,
    num_heads=8,
    pre_ln=False,
    tie_embeddings=True,
    dropout=0.1,
    attention_dropout=0.0,
    max_positions=256,
  )
  # Training: Section 5.3, eq. 3 — lrate = d_model^-0.5 · min(step^-0.5,
  # step · warmup^-1.5), warmup 4000: the rsqrt schedule peaks at
  # 512^-0.5 · 4000^-0.5 ≈ 6.99e-4. Section 5.2: base models 100,000 steps.
  # Section 5.4: label smoothing 0.1. No gradient clipping is mentioned.
  c.train.update(
    optimizer="adam",
    schedule="rsqrt",
    learning_rate=512**-0.5 * 4000**-0.5,
    warmup_steps=4000,
    steps=100_000,
    batch_size=768,
    label_smoothing=0.1,
    grad_clip_norm=0.0,
  )
  # Decoding: Section 6.1 — beam size 4, length penalty α = 0.6, maximum output
  # length input length + 50.
  c.eval.update(
    batch_size=128, beam_size=4, length_penalty=0.6, max_length_a=1.0, max_length_b=50.0
  )
  return common.paper_tiny(c) if tiny else c
