"""Vanishing gradients: which recurrent cells carry a signal across T steps.

Bengio et al. 1994; Hochreiter & Schmidhuber 1997; Pascanu et al. 2013. Each
cell — ``elman`` (tanh), ``gru``, ``lstm``, and ``attention`` (the same Elman
recurrence with an attention-pooling head that reads every state: a short
path from each step to the output) — trains on the adding problem (two marked
numbers somewhere in T steps; predict their sum; always predicting 1 scores
MSE ≈ 0.167) for several T. The report plots the final loss against T,
relative to that trivial baseline (``loss_ratio``; ``< 0.06`` ≈ MSE 0.01 is
counted as solved), and, where the gradient instruments are available, the
curves ‖∂L/∂h_t‖ at initialization and after training.

  python -m experiments.sweep --config configs/vanishing.py --workdir S --jobs 2
  python -m experiments.sweep --config configs/vanishing.py:full --workdir S

Args: none (CPU default, 3 seeds per point, sized for about 40 min with
``--jobs 2`` on the 2-core dev machine — docs/sweeps.md: 4 cells × T ∈
{25, 50, 100, 200} on adding (copy memory at T = 25 is cut to fit the seeds
and left to ``full``); hidden 128, 3,000 steps — enough for the gated cells
on adding at every T; results and the prototypes behind these sizes:
docs/results.md), ``full``
(adding and copy memory, T up to 400, 10,000 steps), ``tiny`` (one point of
a few steps, for tests).
"""

from configs import common

# The sweep's sequence lengths T per task: the CPU default and ``full``.
LENGTHS = {
  None: (("adding", (25, 50, 100, 200)),),  # copy memory: full only (3 seeds fit)
  "full": (("adding", (25, 50, 100, 200, 400)), ("copy_memory", (25, 50, 100, 200))),
}
ANALYSES = ("gradients",)
REPORT = {
  "title": "Vanishing gradients: final loss against sequence length T",
  "description": (
    "`loss_ratio` is the final evaluation loss divided by the trivial "
    "predictor's (adding: always 1, MSE ≈ 0.167; copy memory: the "
    "memoryless baseline). `pooling=attention` is the Elman cell with an "
    "attention head over all its states."
  ),
  "series": ("data.task", "model.cell", "model.pooling"),
  "x": "data.length",
  "x_metrics": ["loss_ratio"],
  "logy": {"loss_ratio": True},
  "logx": True,
  "solved": {"metric": "loss_ratio", "below": 0.06},
  "extra": ("gradients",),
}


def get_config(arg=None):
  config = common.sequence_rnn("adding", "lstm", 100)
  config.train.log_every_steps = 100
  config.eval.every_steps = config.checkpoint.every_steps = 1500
  return common.apply_mode(config, arg, __file__, full=full, tiny=tiny)


def full(config):
  """10,000 steps, evaluated and checkpointed every 2,000."""
  config.train.steps = 10000
  config.eval.every_steps = config.checkpoint.every_steps = 2000


def tiny(config):
  """Hidden 16, T = 12, 4 steps."""
  common.few_steps(config)
  config.data.length = 12


def _point(task, cell, length):
  model_cell, pooling = common.CELLS[cell]
  point = {
    "data.task": task,
    "model.cell": model_cell,
    "model.pooling": pooling,
    "data.length": length,
  }
  if task == "copy_memory":  # token inputs: embedded (adding reads real numbers)
    point["model.embed_dim"] = 16
  return point


def sweep(arg=None):
  mode = common.parse_mode(arg, __file__, "full", "tiny")
  if mode == "tiny":
    yield _point("adding", "elman", 12)
    return
  for task, lengths in LENGTHS[mode]:
    for length in lengths:
      for cell in common.CELLS:
        yield _point(task, cell, length)


def seeds(arg=None):
  """Three seeds per point (``tiny``: one, for tests); ``--seeds N`` overrides."""
  return (0,) if common.parse_mode(arg, __file__, "full", "tiny") == "tiny" else (0, 1, 2)
