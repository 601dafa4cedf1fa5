"""A small GPT (decoder-only, causal self-attention) as a character-level LM.

  python -m experiments.run --config configs/gpt.py --workdir /tmp/gpt \
      --config.data.train_path=SOME.txt
  python -m experiments.generate --workdir /tmp/gpt --prompt "The dog"

2 pre-LN blocks, d_model 64, 4 heads, GELU FFN 256, learned positions,
tied embeddings, windows of 64 characters, batch 32, AdamW 3e-3 with warm-up
and cosine decay, 1,000 steps (sized for a shared 2-core CPU; scale
``model.*`` and ``data.max_length`` up on a GPU). Eval = the file's last 10% (or
``data.eval_path``). On the Vim user manual (214 KB), shared 2-core CPU
under heavy load: 12 min 21 s, eval perplexity 12.54 (step 200) -> 6.72 (step
1,000) (README, "Transformer and GPT").

``:tiny`` is a seconds-long version for tests (``data.train_path`` still
required).
"""

from attention_jax.config import base_config


def get_config(arg=None):
  config = base_config()
  config.seed = 0
  config.model.name = "gpt"
  config.model.hidden_size = 64
  config.model.num_heads = 4
  config.model.num_layers = 2
  config.model.mlp_dim = 256
  config.model.pre_ln = True
  config.model.dropout = 0.1
  config.model.max_positions = 256
  config.data.task = "text"
  config.data.train_path = ""     # required: --config.data.train_path=FILE.txt
  config.data.max_length = 64
  config.data.eval_examples = 256
  config.train.steps = 1000
  config.train.batch_size = 32
  config.train.optimizer = "adamw"
  config.train.weight_decay = 0.01
  config.train.learning_rate = 3e-3
  config.train.schedule = "cosine"
  config.train.warmup_steps = 100
  config.train.end_lr_fraction = 0.1
  config.train.log_every_steps = 100
  config.eval.every_steps = 200
  config.eval.batch_size = 64
  config.checkpoint.every_steps = 500
  if arg == "tiny":
    config.model.hidden_size = 32
    config.model.num_layers = 1
    config.model.mlp_dim = 64
    config.model.num_heads = 2
    config.model.dropout = 0.0
    config.model.max_positions = 64
    config.data.max_length = 32
    config.data.eval_examples = 32
    config.train.steps = 60
    config.train.batch_size = 16
    config.train.learning_rate = 3e-3
    config.train.warmup_steps = 10
    config.train.log_every_steps = 20
    config.eval.every_steps = 20
    config.eval.batch_size = 32
    config.checkpoint.every_steps = 60
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; allowed: 'tiny'")
  return config
