"""RNN encoder–decoder of Cho et al. 2014 (no attention) on ``reverse``.

GRU encoder–decoder, the whole source squeezed into one context vector c;
sequences of 1–10 symbols from a vocabulary of 10, hidden 128, maxout readout
(Cho et al. 2014, eq. 12), Adam 3e-3 with warm-up and cosine decay, 3,000 steps.

Measured (2-core CPU dev machine shared by ~8 engineers, load average ~22–28):
``python -m experiments.run --config configs/rnn_encdec.py --workdir W`` took
206 s wall (10–42 steps/s under that load); eval on 1,000 held-out sequences of
length 1–10: sequence_accuracy 0.879 at step 1,000, 0.995 at 2,000 and
**1.000** (token_accuracy 1.000) at 3,000. (At lengths up to 30 this model
fails where ``rnnsearch`` succeeds: STACK_NOTES.)

``get_config("tiny")``: a few-second version for tests.
"""

from attention_jax.config import base_config


def get_config(arg=None):
  config = base_config()
  config.seed = 0
  config.model.name = "rnn_encdec"
  config.model.embed_dim = 32
  config.model.hidden_size = 128
  config.model.readout = "maxout"
  config.data.task = "reverse"
  config.data.vocab_size = 10
  config.data.train_min_length = 1
  config.data.train_max_length = 10
  config.data.eval_min_length = 1
  config.data.eval_max_length = 10
  config.data.eval_examples = 1000
  config.train.steps = 3000
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.schedule = "cosine"
  config.train.warmup_steps = 200
  config.eval.every_steps = 1000
  config.checkpoint.every_steps = 1000
  if arg == "tiny":
    tiny(config)
  elif arg:
    raise ValueError(f"configs/rnn_encdec.py: unknown argument {arg!r}; allowed: 'tiny'")
  return config


def tiny(config):
  """Vocabulary 6, lengths 1–5, hidden 32: trains in seconds on a CPU."""
  config.model.embed_dim = 16
  config.model.hidden_size = 32
  config.data.vocab_size = 6
  config.data.train_max_length = 5
  config.data.eval_max_length = 5
  config.data.eval_examples = 200
  config.train.steps = 400
  config.train.batch_size = 32
  config.train.learning_rate = 1e-2
  config.train.warmup_steps = 20
  config.train.log_every_steps = 100
  config.eval.every_steps = 400
  config.eval.batch_size = 200
  config.checkpoint.every_steps = 400
