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

Sizes (``common.sequence_rnn``) from prototypes on the 2-core CPU, where an
LSTM solved adding at T = 100 in ~900 steps: hidden 128, batch 32, Adam 1e-3,
global-norm clipping 1.0; here with 100 warm-up steps and cosine decay to 5%
over 3,000 steps. Every value is overridable: ``--config.train.steps=5000``.

Measured on the idle 2-core CPU dev machine (two runs at a time), adding
problem, T = 100, seed 0, eval on 1,000 held-out sequences — see
docs/vanishing.md:

* ``cell=lstm``: eval MSE 0.166 / 0.150 at steps 250 / 500, **0.0050 at step
  750** (~32 s after launch, compilation included), 0.0003 at step 3,000
  (1 min 42 s in all).
* ``cell=elman``: 0.16-0.20 up to step 2,000, then 0.044 at 2,250 and 0.043
  at 3,000 (25 s in all): partly learnt, not solved. With
  ``--config.train.steps=12000`` (cosine over 12,000 steps): 0.14-0.18 up to
  step 6,000, then a slow fall to 0.0123 at step 12,000 (1 min 23 s) — still
  above 0.01.
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
