"""Shared by the paper configs: argument parsing and the tiny mode.

Not a config itself (no ``get_config``). The paper configs read a TFDS catalog
dataset by name (``data.task = "tfds:wmt14_translate/fr-en"``), which needs
the dataset prepared once with network access (see README, "Data"). Their
``tiny`` argument swaps in the synthetic ``reverse`` task and tiny sizes — the
same model family, cell, readout and optimizer — so that each one runs in the
test suite without network.
"""


def parse_arg(arg, variants=(), path="config"):
  """``"rnnsearch30,tiny"`` -> (variant or None, tiny flag)."""
  variant, tiny = None, False
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    if part == "tiny":
      tiny = True
    elif part in variants:
      variant = part
    else:
      allowed = ", ".join(repr(v) for v in (*variants, "tiny"))
      raise ValueError(f"{path}: unknown argument {part!r}; allowed: {allowed}")
  return variant, tiny


def make_tiny(config):
  """Synthetic ``reverse``, vocabulary 6, lengths 1–5, a few steps.

  Model sizes shrink only where the model reads the key, and every data key
  that ``reverse`` does not read goes back to its default (the paper's
  dataset keys would otherwise be refused as ignored)."""
  from attention_jax import config as config_lib
  from attention_jax import data, models
  c = config
  defaults = config_lib.base_config()
  c.data.task = "reverse"
  reads = data.config_keys(c)
  for key in c.data:
    if key not in reads:
      c.data[key] = defaults.data[key]
  c.data.vocab_size = 6
  c.data.train_min_length = 1
  c.data.train_max_length = 5
  c.data.eval_min_length = 1
  c.data.eval_max_length = 5
  c.data.eval_examples = 16
  m = c.model
  tiny = {"embed_dim": 8, "hidden_size": 16, "num_layers": min(m.num_layers, 2),
          "readout_dim": min(m.readout_dim, 8),
          "attention_dim": min(m.attention_dim, 8), "mlp_dim": min(m.mlp_dim, 32),
          "num_heads": min(m.num_heads, 2)}
  reads = models.config_keys(c)
  for key, value in tiny.items():
    if key in reads:
      m[key] = value
  c.train.steps = 3
  c.train.batch_size = 8
  c.train.warmup_steps = min(c.train.warmup_steps, 1)
  c.train.log_every_steps = 3
  c.eval.every_steps = 3
  c.eval.batch_size = 16
  c.eval.beam_size = 1              # beam search compiles slowly; tests stay fast
  c.checkpoint.every_steps = 3
  return c
