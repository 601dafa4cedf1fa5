"""Transformer encoder–decoder (Vaswani et al. 2017) learns to reverse.

  python -m experiments.run --config configs/transformer.py --workdir /tmp/tf

2 encoder + 2 decoder layers, d_model 64, 4 heads, FFN 128, pre-LN, tied
target embedding; reverse sequences of 1–10 symbols from a vocabulary of 10;
Adam 1e-3 with the inverse-square-root schedule of the paper (eq. 3, 200
warm-up steps), label smoothing 0.1, dropout 0.1; 2,000 steps, batch 64.
Results: docs/models.md, "Transformer and GPT".

``:tiny`` is a seconds-long version for tests.
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("reverse", 10, steps=2000, every=500)
  config.model.update(
    name="transformer",
    hidden_size=64,
    num_heads=4,
    num_layers=2,
    mlp_dim=128,
    pre_ln=True,
    dropout=0.1,
    max_positions=32,
  )
  # The paper's schedule (eq. 3): linear warm-up, then 1/sqrt(step).
  config.train.update(learning_rate=1e-3, schedule="rsqrt", label_smoothing=0.1)
  return common.apply_mode(config, arg, __file__, tiny=tiny)


def tiny(config):
  """Vocabulary 6, lengths 1–5, d_model 32, one layer: seconds on a CPU."""
  common.tiny_reverse(config, eval_examples=64)
  config.model.update(hidden_size=32, num_layers=1, mlp_dim=64, dropout=0.0)
  # 600 steps: held-out eval sequences need more than 300.
  config.train.update(
    steps=600, batch_size=32, learning_rate=5e-3, warmup_steps=50, log_every_steps=50
  )
  config.eval.every_steps = config.checkpoint.every_steps = 600
