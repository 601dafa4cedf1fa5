"""A small GPT (decoder-only, causal self-attention) as a character-level LM.

  python -m experiments.run --config configs/gpt.py --workdir /tmp/gpt \
      --config.data.train_path=SOME.txt
  python -m experiments.generate --workdir /tmp/gpt --prompt "The dog"

2 pre-LN blocks, d_model 64, 4 heads, GELU FFN 256, learned positions,
tied embeddings, windows of 64 characters, batch 32, AdamW 3e-3 with warm-up
and cosine decay, 1,000 steps (sized for a shared 2-core CPU; scale
``model.*`` and ``data.max_length`` up on a GPU). Eval = the file's last 10% (or
``data.eval_path``). Results: docs/models.md, "Transformer and GPT".

``:tiny`` is a seconds-long version for tests (``data.train_path`` still
required).
"""

from attention_jax.config import base_config
from configs import common


def get_config(arg=None):
  config = base_config()
  config.model.update(
    name="gpt",
    hidden_size=64,
    num_heads=4,
    num_layers=2,
    mlp_dim=256,
    pre_ln=True,
    dropout=0.1,
    max_positions=256,
  )
  config.data.update(task="text", max_length=64, eval_examples=256)
  config.data.train_path = ""  # required: --config.data.train_path=FILE.txt
  config.train.update(
    steps=1000,
    batch_size=32,
    optimizer="adamw",
    weight_decay=0.01,
    learning_rate=3e-3,
    schedule="cosine",
    warmup_steps=100,
    end_lr_fraction=0.1,
    log_every_steps=100,
  )
  config.eval.update(every_steps=200, batch_size=64)
  config.checkpoint.every_steps = 500
  return common.apply_mode(config, arg, __file__, tiny=tiny)


def tiny(config):
  """d_model 32, one layer of 2 heads, windows of 32 characters, 60 steps."""
  config.model.update(
    hidden_size=32, num_layers=1, mlp_dim=64, num_heads=2, dropout=0.0, max_positions=64
  )
  config.data.update(max_length=32, eval_examples=32)
  config.train.update(steps=60, batch_size=16, warmup_steps=10, log_every_steps=20)
  config.eval.update(every_steps=20, batch_size=32)
  config.checkpoint.every_steps = 60
