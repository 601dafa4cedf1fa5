"""Quickstart: the RNN encoder–decoder of Cho et al. 2014 learns to reverse.

GRU encoder–decoder without attention, sequences of 1–10 symbols from a
vocabulary of 10, hidden 128, Adam 3e-3 with warm-up and cosine decay.
Results: README.md (quickstart).
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("reverse", 10, steps=2000, every=500)
  config.model.update(name="rnn_encdec", embed_dim=32, hidden_size=128)
  config.train.warmup_steps = 100
  return common.apply_mode(config, arg, __file__)  # takes no argument
