"""Long-range dependencies: what a recurrent state can carry across T steps.

  python -m experiments.run --workdir W \\
      --config configs/long_range.py:cell=lstm,task=adding,length=100

ARG is ``key=value`` pairs separated by commas (all optional):

* ``cell``: ``elman`` (tanh, orthogonal recurrent init), ``gru``, ``lstm``
  (forget-gate bias 1) — the head reads the last state ``h_T`` — or
  ``attention``: the same Elman recurrence with an attention-pooling head that
  reads every state (a short path from each step to the output);
* ``task``: ``adding`` (MSE; always predicting 1 scores ≈ 0.167), ``copy``
  (copy memory; memoryless cross-entropy 10·ln 8/(T+20)) or ``order``
  (temporal order, 4 classes; chance: ln 4, accuracy 0.25);
* ``length``: T (default 100);
* ``tiny``: 1 for a seconds-long CPU run (hidden 16, T ≤ 12, 30 steps).

Sizes (``common.sequence_rnn``): hidden 128, batch 32, Adam 1e-3,
global-norm clipping 1.0, 100 warm-up steps and cosine decay to 5% over 3,000
steps — enough for an LSTM to solve adding at T = 100 on a CPU. Every value
is overridable: ``--config.train.steps=5000``. Results: docs/vanishing.md,
"Training on the adding problem".
"""

from configs import common

TASKS = {"adding": "adding", "copy": "copy_memory", "order": "temporal_order"}
DEFAULTS = {"cell": "lstm", "task": "adding", "length": "100", "tiny": "0"}


def parse_arg(arg):
  """``"cell=lstm,task=adding"`` -> dict of all four choices (strings)."""
  choices = common.key_values(arg, __file__, DEFAULTS)
  for key, allowed in (("cell", common.CELLS), ("task", TASKS)):
    if choices[key] not in allowed:
      raise ValueError(
        f"{common.where(__file__)}: {key}={choices[key]!r}; allowed: {', '.join(allowed)}"
      )
  for key, least in (("length", 1), ("tiny", 0)):
    try:
      number = int(choices[key])
    except ValueError:
      number = -1
    if number < least:
      raise ValueError(
        f"{common.where(__file__)}: {key}={choices[key]!r}; must be an integer >= {least}"
      )
  return choices


def get_config(arg=None):
  choices = parse_arg(arg)
  config = common.sequence_rnn(TASKS[choices["task"]], choices["cell"], int(choices["length"]))
  config.train.log_every_steps = 50
  config.eval.every_steps = 250
  config.checkpoint.every_steps = 500
  if int(choices["tiny"]):
    tiny(config)
  return config


def tiny(config):
  """Hidden 16 (embeddings 8), T <= 12, 30 steps of Adam 1e-2, batch 16."""
  common.set_where_read(config, hidden_size=16, embed_dim=8)
  config.data.update(length=min(config.data.length, 12), eval_examples=64)
  config.train.update(
    steps=30, batch_size=16, learning_rate=1e-2, warmup_steps=5, log_every_steps=10
  )
  config.eval.every_steps = config.checkpoint.every_steps = 15
  config.eval.batch_size = 32
