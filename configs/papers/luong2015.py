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

from configs import common


def get_config(arg=None):
  _, tiny = common.paper_arg(arg, __file__)
  # Data: Section 4.1, WMT'14 English→German (4.5M pairs), the 50K most
  # frequent words per language, pairs longer than 50 words filtered out.
  c = common.wmt14("de")
  c.data.update(max_vocab=50_000, max_length=50)
  # Model: Section 4.1, "stacking LSTM models have 4 layers, each with 1000
  # cells, and 1000-dimensional embeddings"; global attention (3.1), general
  # score (eq. 8), input feeding (3.3); reversed source (4.1, after
  # Sutskever); dropout 0.2 for the dropout models (4.1).
  c.model.update(
    name="luong",
    num_layers=4,
    hidden_size=1000,
    embed_dim=1000,
    attention_score="general",
    input_feeding=True,
    reverse_source=True,
    dropout=0.2,
  )
  # Training: Section 4.1 — SGD, minibatch 128, gradient norm rescaled to 5
  # whenever it exceeds 5, 12 epochs for the dropout models (≈ 420k steps of
  # 4.5M pairs at batch 128). Schedule: see the module docstring.
  c.train.update(
    optimizer="sgd",
    learning_rate=0.1,
    schedule="cosine",
    warmup_steps=0,
    end_lr_fraction=0.0,
    batch_size=128,
    grad_clip_norm=5.0,
    steps=420_000,
  )
  # Decoding: the beam is not stated in Section 4; 10 is a choice.
  c.eval.update(batch_size=128, beam_size=10)
  return common.paper_tiny(c) if tiny else c
