"""Global attention of Luong et al. 2015 on ``reverse`` of sequences up to length 30.

Two-layer LSTM encoder and decoder, ``general`` score h_tᵀ W_a h̄_s, input
feeding, attentional state h̃_t = tanh(W_c [c_t; h_t]); hidden 64, vocabulary 10,
lengths 1–30, Adam 3e-3 with 200 warm-up steps then cosine to 5%, clip 1.0,
2,000 steps. Try ``--config.model.attention_score=dot`` or ``concat``, and
``--config.model.input_feeding=False``.

Measured (2-core CPU dev machine shared by ~8 engineers, load average ~20):
``python -m experiments.run --config configs/luong.py --workdir W`` took 580 s
wall (2.7–5.8 steps/s under that load); eval on 1,000 held-out sequences of
length 1–30: sequence_accuracy 0.713 at step 500, 0.999 at 1,000, 1.000 at
1,500 and **1.000** (token_accuracy 1.000) at 2,000.

``get_config("tiny")``: a few-second version for tests.
"""

from attention_jax.config import base_config


def get_config(arg=None):
  config = base_config()
  config.seed = 0
  config.model.name = "luong"
  config.model.embed_dim = 32
  config.model.hidden_size = 64
  config.model.num_layers = 2
  config.model.attention_score = "general"
  config.model.input_feeding = True
  config.data.task = "reverse"
  config.data.vocab_size = 10
  config.data.train_min_length = 1
  config.data.train_max_length = 30
  config.data.eval_min_length = 1
  config.data.eval_max_length = 30
  config.data.eval_examples = 1000
  config.train.steps = 2000
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.schedule = "cosine"
  config.train.warmup_steps = 200
  config.train.grad_clip_norm = 1.0
  config.eval.every_steps = 500
  config.checkpoint.every_steps = 500
  if arg == "tiny":
    tiny(config)
  elif arg:
    raise ValueError(f"configs/luong.py: unknown argument {arg!r}; allowed: 'tiny'")
  return config


def tiny(config):
  """Vocabulary 6, lengths 1–5, hidden 32, one layer: trains in seconds on a CPU."""
  config.model.embed_dim = 16
  config.model.hidden_size = 32
  config.model.num_layers = 1
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
