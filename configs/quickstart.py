"""Quickstart: the RNN encoder–decoder of Cho et al. 2014 learns to reverse.

GRU encoder–decoder without attention, sequences of 1–10 symbols from a
vocabulary of 10, hidden 128, Adam 3e-3 with warm-up and cosine decay.
Measured on the 2-core CPU dev machine: see README (Quickstart).
"""

from attention_jax.config import base_config


def get_config(arg=None):
  del arg
  config = base_config()
  config.seed = 0
  config.model.name = "rnn_encdec"
  config.model.embed_dim = 32
  config.model.hidden_size = 128
  config.data.task = "reverse"
  config.data.vocab_size = 10
  config.data.train_min_length = 1
  config.data.train_max_length = 10
  config.data.eval_min_length = 1
  config.data.eval_max_length = 10
  config.data.eval_examples = 1000
  config.train.steps = 2000
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.schedule = "cosine"
  config.train.warmup_steps = 100
  config.train.log_every_steps = 100
  config.eval.every_steps = 500
  config.checkpoint.every_steps = 500
  return config
