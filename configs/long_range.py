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

Sizes follow the calibration in STACK_NOTES: hidden 128, batch 32, Adam 1e-3,
global-norm clipping 1.0; here with 100 warm-up steps and cosine decay to 5%
over 3,000 steps. Every value is overridable: ``--config.train.steps=5000``.

Measured on the idle 2-core CPU dev machine (two runs at a time), adding
problem, T = 100, seed 0, eval on 1,000 held-out sequences — see README,
"Vanishing gradients":

* ``cell=lstm``: eval MSE 0.166 / 0.150 at steps 250 / 500, **0.0050 at step
  750** (~32 s after launch, compilation included), 0.0003 at step 3,000
  (1 min 42 s in all).
* ``cell=elman``: 0.16-0.20 up to step 2,000, then 0.044 at 2,250 and 0.043
  at 3,000 (25 s in all): partly learnt, not solved. With
  ``--config.train.steps=12000`` (cosine over 12,000 steps): 0.14-0.18 up to
  step 6,000, then a slow fall to 0.0123 at step 12,000 (1 min 23 s) — still
  above 0.01.
"""

from attention_jax.config import base_config
from attention_jax.data import long_range

CELLS = ("elman", "gru", "lstm", "attention")
TASKS = {"adding": "adding", "copy": "copy_memory", "order": "temporal_order"}
DEFAULTS = {"cell": "lstm", "task": "adding", "length": "100", "tiny": "0"}


def parse_arg(arg):
  """``"cell=lstm,task=adding"`` -> dict of all four choices (strings)."""
  choices = dict(DEFAULTS)
  for part in (arg or "").split(","):
    part = part.strip()
    if not part:
      continue
    if "=" not in part:
      raise ValueError(f"configs/long_range.py: argument {part!r} is not "
                       f"key=value; keys: {', '.join(DEFAULTS)}")
    key, value = (s.strip() for s in part.split("=", 1))
    if key not in DEFAULTS:
      raise ValueError(f"configs/long_range.py: unknown argument key {key!r}; "
                       f"keys: {', '.join(DEFAULTS)}")
    choices[key] = value
  if choices["cell"] not in CELLS:
    raise ValueError(f"configs/long_range.py: cell={choices['cell']!r}; "
                     f"allowed: {', '.join(CELLS)}")
  if choices["task"] not in TASKS:
    raise ValueError(f"configs/long_range.py: task={choices['task']!r}; "
                     f"allowed: {', '.join(TASKS)}")
  for key in ("length", "tiny"):
    try:
      number = int(choices[key])
    except ValueError:
      number = -1
    if number < (1 if key == "length" else 0):
      raise ValueError(f"configs/long_range.py: {key}={choices[key]!r}; "
                       f"must be an integer >= {1 if key == 'length' else 0}")
  return choices


def get_config(arg=None):
  choices = parse_arg(arg)
  config = base_config()
  config.seed = 0
  config.model.name = "sequence_rnn"
  if choices["cell"] == "attention":
    config.model.cell = "elman"
    config.model.pooling = "attention"
  else:
    config.model.cell = choices["cell"]
    config.model.pooling = "last"
  config.model.hidden_size = 128
  config.data.task = TASKS[choices["task"]]
  tokens = not long_range.spec(config.data.task).input_channels
  if tokens:                           # adding reads real numbers: no embedding
    config.model.embed_dim = 16
  config.data.length = int(choices["length"])
  config.data.eval_examples = 1000
  config.train.steps = 3000
  config.train.batch_size = 32
  config.train.learning_rate = 1e-3
  config.train.optimizer = "adam"
  config.train.schedule = "cosine"
  config.train.warmup_steps = 100
  config.train.end_lr_fraction = 0.05
  config.train.grad_clip_norm = 1.0
  config.train.log_every_steps = 50
  config.eval.every_steps = 250
  config.eval.batch_size = 250
  config.checkpoint.every_steps = 500
  if int(choices["tiny"]):
    config.model.hidden_size = 16
    if tokens:
      config.model.embed_dim = 8
    config.data.length = min(config.data.length, 12)
    config.data.eval_examples = 64
    config.train.steps = 30
    config.train.batch_size = 16
    config.train.warmup_steps = 5
    config.train.learning_rate = 1e-2
    config.train.log_every_steps = 10
    config.eval.every_steps = 15
    config.eval.batch_size = 32
    config.checkpoint.every_steps = 15
  return config
