"""Positions and length extrapolation: which position scheme survives sources
longer than any seen in training.

The bottleneck sweep's Transformer is exact up to its longest training length
and fails just past it: its sinusoidal positions past the training lengths are
new inputs. Here each position scheme (``model.position``; see
``attention_jax/positions.py``) trains on ``reverse`` and ``copy`` of 1–30
symbols and is evaluated on 1–60 (``eval/by_length.csv``):

* ``gpt`` (decoder-only: source, separator, target; loss on the target) with
  ``sinusoidal``, ``learned``, ``rope`` (Su et al. 2021), ``alibi`` (Press et
  al. 2022) and ``none`` (Kazemnejad et al. 2023) — where the extrapolation
  literature measures;
* ``transformer`` (encoder–decoder) with ``sinusoidal``, ``learned``,
  ``rope`` and ``alibi`` (an encoder without positions is refused); RoPE and
  ALiBi act on self-attention only, the cross-attention has no position term.

The report gives exact match by length and the first length where each point
falls below half of its short-sentence exact match.

  python -m experiments.sweep --config configs/positions.py --workdir S --jobs 2
  python -m experiments.sweep --config configs/positions.py:full --workdir S   # GPU
  python -m experiments.run --config configs/positions.py --workdir W \\
      --config.model.position=alibi                               # one point (gpt)

Args: none (CPU default: d_model 64, 2 layers, 4 heads, FFN 128, 2,000
steps of batch 32, Adam 3e-3 with 200 warm-up steps and cosine decay,
evaluated once at the end; 3 seeds per point, sized for about 40 min with
``--jobs 2`` on the 2-core dev machine (docs/sweeps.md): the decoder-only
``gpt`` with all 5 schemes on both tasks, the encoder–decoder
``transformer`` with ``sinusoidal`` and ``rope`` on ``reverse`` only (its
other points are cut to fit the seeds and left to ``full``); results:
docs/instruments.md, "Positions and length extrapolation"),
``full`` (d_model 128, 3 layers, 8 heads, 20k steps of batch 128),
``tiny`` (one ``gpt`` point of a few steps, for tests).
``model.max_positions`` = 128 holds a 60-symbol source and its output in the
decoder-only model's KV cache; learned tables have 128 rows, of which
training reaches the first 61.
"""

from configs import common

SCHEMES = {
  "gpt": ("sinusoidal", "learned", "rope", "alibi", "none"),
  "transformer": ("sinusoidal", "learned", "rope", "alibi"),
}
TASKS = ("reverse", "copy")
CPU_TRANSFORMER = (("reverse", "sinusoidal"), ("reverse", "rope"))  # its CPU-default points
ANALYSES = ("by_length",)
REPORT = {
  "title": "Positions: exact match beyond the training lengths",
  "description": (
    "Each line is one model and position scheme trained on sources of 1–30 "
    "symbols, the mean over its seeds, evaluated on 100 held-out sources of "
    "every length from 1 to 60 per seed (greedy decoding, exact match of the "
    "whole output). The dashed line is the longest training length."
  ),
  "series": ("model.name", "model.position"),
  "panels": "data.task",
  "by_length_metric": "sequence_accuracy",
  "table_lengths": (10, 20, 30, 32, 35, 40, 50, 60),
  "extra": ("position_table",),
}


def get_config(arg=None):
  config = common.synthetic("reverse", 30, steps=2000, every=2000)
  config.model.update(
    name="gpt",
    hidden_size=64,
    num_layers=2,
    num_heads=4,
    mlp_dim=128,
    dropout=0.0,
    max_positions=128,
  )
  config.data.eval_examples = 500
  # Batch 32: on one CPU core a step of 32 runs ~1.6x the tokens/s of a step
  # of 64 (its activations stay in cache), and twice the updates learn more.
  config.train.update(batch_size=32, log_every_steps=250)
  config.checkpoint.every_steps = 1000
  return common.apply_mode(config, arg, __file__, full=full, tiny=tiny)


def full(config):
  """GPU size: d_model 128, 3 layers, 8 heads, FFN 512; 20k steps of batch 128."""
  common.full_synthetic(config)
  config.model.update(hidden_size=128, num_layers=3, num_heads=8, mlp_dim=512)


def tiny(config):
  """Lengths 1–4 (evaluated to 8), d_model 16, one layer of 2 heads, 4 steps."""
  common.few_steps(config)
  common.lengths(config, 4)
  config.model.update(num_layers=1, num_heads=2, mlp_dim=32, max_positions=20)


def sweep(arg=None):
  mode = common.parse_mode(arg, __file__, "full", "tiny")
  if mode == "tiny":
    yield {"model.name": "gpt", "model.position": "alibi"}
    return
  for task in TASKS:
    for model, schemes in SCHEMES.items():
      for scheme in schemes:
        if mode != "full" and model == "transformer" and (task, scheme) not in CPU_TRANSFORMER:
          continue  # cut from the CPU default so that 3 seeds fit ~40 min
        yield {"data.task": task, "model.name": model, "model.position": scheme}


def seeds(arg=None):
  """Three seeds per point (``tiny``: one, for tests); ``--seeds N`` overrides."""
  return (0,) if common.parse_mode(arg, __file__, "full", "tiny") == "tiny" else (0, 1, 2)
