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

Args: none (CPU default, 12 min 43 s with ``--jobs 2`` on the idle 2-core dev
machine: 4 cells × T ∈ {25, 50, 100, 200} on adding, plus the 4 cells on copy
memory at T = 25; hidden 128, 3,000 steps — STACK_NOTES: LSTM solves adding
T=100 in ~900 steps and T=200 in ~2,200, GRU in 300–500, the tanh Elman
fails from T=50; copy memory needs ~8,500 steps for an LSTM to reach half
the baseline at T=50, so longer copy tasks are left to ``full``), ``full``
(adding and copy memory, T up to 400, 10,000 steps), ``tiny`` (one point of
a few steps, for tests).
"""

from attention_jax.config import base_config

CELLS = {   # name -> (model.cell, model.pooling)
    "elman": ("elman", "last"),
    "gru": ("gru", "last"),
    "lstm": ("lstm", "last"),
    "attention": ("elman", "attention"),
}
ANALYSES = ("gradients",)
REPORT = {
    "title": "Vanishing gradients: final loss against sequence length T",
    "description": (
        "`loss_ratio` is the final evaluation loss divided by the trivial "
        "predictor's (adding: always 1, MSE ≈ 0.167; copy memory: the "
        "memoryless baseline). `pooling=attention` is the Elman cell with an "
        "attention head over all its states."),
    "series": ("data.task", "model.cell", "model.pooling"),
    "x": "data.length",
    "x_metrics": ["loss_ratio"],
    "logy": {"loss_ratio": True},
    "logx": True,
    "solved": {"metric": "loss_ratio", "below": 0.06},
    "extra": ("gradients",),
}


def get_config(arg=None):
  config = base_config()
  config.seed = 0
  config.model.name = "sequence_rnn"
  config.model.cell = "lstm"
  config.model.pooling = "last"
  config.model.hidden_size = 128
  config.data.task = "adding"
  config.data.length = 100
  config.data.eval_examples = 1000
  config.train.steps = 3000
  config.train.batch_size = 32
  config.train.learning_rate = 1e-3
  config.train.schedule = "cosine"
  config.train.warmup_steps = 100
  config.train.end_lr_fraction = 0.05
  config.train.grad_clip_norm = 1.0
  config.train.log_every_steps = 100
  config.eval.every_steps = 1500
  config.eval.batch_size = 250
  config.checkpoint.every_steps = 1500
  if arg == "full":
    config.train.steps = 10000
    config.eval.every_steps = 2000
    config.checkpoint.every_steps = 2000
  elif arg == "tiny":
    config.model.hidden_size = 16
    config.data.length = 12
    config.data.eval_examples = 32
    config.train.steps = 4
    config.train.batch_size = 8
    config.train.warmup_steps = 1
    config.train.log_every_steps = 2
    config.eval.every_steps = 4
    config.eval.batch_size = 32
    config.checkpoint.every_steps = 4
  elif arg is not None:
    raise ValueError(f"unknown arg {arg!r}; allowed: none, 'full', 'tiny'")
  return config


def _point(task, cell, length):
  model_cell, pooling = CELLS[cell]
  point = {"data.task": task, "model.cell": model_cell, "model.pooling": pooling,
           "data.length": length}
  if task == "copy_memory":   # token inputs: embedded (adding reads real numbers)
    point["model.embed_dim"] = 16
  return point


def sweep(arg=None):
  if arg == "tiny":
    yield _point("adding", "elman", 12)
    return
  if arg == "full":
    for task, lengths in (("adding", (25, 50, 100, 200, 400)),
                          ("copy_memory", (25, 50, 100, 200))):
      for length in lengths:
        for cell in CELLS:
          yield _point(task, cell, length)
    return
  for task, lengths in (("adding", (25, 50, 100, 200)), ("copy_memory", (25,))):
    for length in lengths:
      for cell in CELLS:
        yield _point(task, cell, length)
