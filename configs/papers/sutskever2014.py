"""Sutskever, Vinyals & Le 2014, "Sequence to Sequence Learning with Neural
Networks" (NeurIPS 2014): a 4-layer LSTM encoder–decoder, 1000 cells per
layer, source read backwards, WMT'14 English→French.

  python -m experiments.run --config configs/papers/sutskever2014.py --workdir W
  python -m experiments.run --config configs/papers/sutskever2014.py:tiny --workdir W

Differences from the paper, by necessity or choice: the paper's vocabularies
are 160,000 source / 80,000 target words (``data.max_vocab`` here is one
limit for both sides: 160,000); its SGD has no momentum while ``train.optimizer
= "sgd"`` uses momentum 0.9 (train.py), so the learning rate here is 0.07 (the
same effective step 0.7 on a constant gradient), constant — the paper halves it
every half epoch after 5 epochs, which no schedule here expresses; the
paper's parameters are uniform in [−0.08, 0.08], ours use the library's
initializers. ``tiny``: synthetic ``reverse``, a few steps, for tests.
"""

from configs import common


def get_config(arg=None):
  _, tiny = common.paper_arg(arg, __file__)
  # Data: Section 3.1, WMT'14 English→French (a 12M-sentence subset); 160k
  # source / 80k target words (one limit here); the length limit is not
  # stated, 80 is a choice.
  c = common.wmt14("fr")
  c.data.update(max_vocab=160_000, max_length=80)
  # Model: Section 3.4, "deep LSTMs with 4 layers, with 1000 cells at each
  # layer and 1000 dimensional word embeddings"; Section 3.3: reversing the
  # source sentences.
  c.model.update(
    name="seq2seq_lstm", num_layers=4, hidden_size=1000, embed_dim=1000, reverse_source=True
  )
  # Training: Section 3.4 — batch 128; gradient norm clipped at 5 ("if s > 5,
  # g = 5g/s"); 7.5 epochs ≈ 700k steps of 12M pairs at batch 128. Learning
  # rate: see the module docstring.
  c.train.update(
    optimizer="sgd",
    learning_rate=0.07,
    schedule="constant",
    warmup_steps=0,
    batch_size=128,
    grad_clip_norm=5.0,
    steps=700_000,
  )
  # Decoding: Section 3.6 / Table 1, beam size 12 without a length penalty.
  c.eval.update(batch_size=128, beam_size=12, length_penalty=0.0)
  return common.paper_tiny(c) if tiny else c
