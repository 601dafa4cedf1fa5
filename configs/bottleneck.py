"""The fixed-length bottleneck: accuracy against source length.

Bahdanau et al. 2014 (Fig. 2) and Cho et al. 2014 (Section 4, "the performance
of the basic encoder–decoder deteriorates rapidly as the length of an input
sentence increases"): an RNN encoder–decoder (``rnn_encdec``) squeezes the
source into one ``hidden_size`` vector, RNNsearch (``rnnsearch``) attends over
every encoder state, and the Transformer (``transformer``) attends without
recurrence. Each model × hidden size × training-length limit trains on
``reverse`` (the first source symbol is needed last) and is evaluated on
sources up to 2× the training limit (``eval/by_length.csv``).

  python -m experiments.sweep --config configs/bottleneck.py --workdir S --jobs 2
  python -m experiments.sweep --config configs/bottleneck.py:full --workdir S   # GPU/TPU
  python -m experiments.run --config configs/bottleneck.py --workdir W \\
      --config.model.name=rnnsearch                                  # one point

Args: none (CPU default, 12 min 12 s with ``--jobs 2`` on the idle 2-core
dev machine: ``rnn_encdec`` and ``rnnsearch`` at hidden 32, 64, 128 and one
``transformer`` (d_model 64, 1 layer, 4 heads); lengths 1..30, 3,000 steps —
calibrated in STACK_NOTES),
``full`` (4 sizes × 3 models × limits 10/20/30/50 × reverse, and
reorder where that task is registered; 20k steps), ``tiny`` (one point of a few steps, for tests).
"""

from attention_jax.config import base_config

MODELS = ("rnn_encdec", "rnnsearch")
FULL_MODELS = ("rnn_encdec", "rnnsearch", "transformer")
ANALYSES = ("by_length",)
REPORT = {
    "title": "Bottleneck: exact match against source length",
    "description": (
        "Each line is one trained model, evaluated on about 40 fresh sources of "
        "every length from 1 to twice its training limit (greedy decoding, exact "
        "match of the whole output)."),
    "series": ("model.name", "model.hidden_size"),
    "panels": "data.train_max_length",
    "by_length_metric": "sequence_accuracy",
    "by_length_extra": ("token_accuracy", "bleu"),
    "heatmap": {"where": {"model.name": "rnn_encdec"}, "rows": "model.hidden_size"},
    "contrast": "model.name",
}


def get_config(arg=None):
  config = base_config()
  config.seed = 0
  config.model.name = "rnn_encdec"
  config.model.embed_dim = 32
  config.model.hidden_size = 64
  config.data.task = "reverse"
  config.data.vocab_size = 10
  config.data.train_min_length = 1
  config.data.train_max_length = 30
  config.data.eval_min_length = 1
  config.data.eval_max_length = 30
  config.data.eval_examples = 500
  config.train.steps = 3000
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.schedule = "cosine"     # constant LR makes Adam spike (STACK_NOTES)
  config.train.warmup_steps = 200
  config.train.end_lr_fraction = 0.05
  config.train.grad_clip_norm = 1.0
  config.train.log_every_steps = 250
  config.eval.every_steps = 1500
  config.checkpoint.every_steps = 1500
  if arg == "full":
    config.train.steps = 20000
    config.train.batch_size = 128
    config.data.eval_examples = 2000
    config.eval.every_steps = 2000
    config.checkpoint.every_steps = 2000
  elif arg == "tiny":
    config.model.embed_dim = 8
    config.model.hidden_size = 16
    config.data.train_max_length = 4
    config.data.eval_max_length = 4
    config.data.eval_examples = 32
    config.train.steps = 4
    config.train.warmup_steps = 1
    config.train.batch_size = 8
    config.train.log_every_steps = 2
    config.eval.every_steps = 4
    config.eval.batch_size = 32
    config.checkpoint.every_steps = 4
  elif arg is not None:
    raise ValueError(f"unknown arg {arg!r}; allowed: none, 'full', 'tiny'")
  return config


def sweep(arg=None):
  if arg == "tiny":
    yield {"model.name": "rnn_encdec", "model.hidden_size": 16}
    return
  if arg == "full":
    from attention_jax import data   # reorder: when its task is registered
    tasks = ("reverse",) + (("reorder",) if data.is_known_task("reorder") else ())
    for task in tasks:
      for limit in (10, 20, 30, 50):
        for model in FULL_MODELS:
          for hidden in (32, 64, 128, 256):
            yield {"data.task": task, "data.train_max_length": limit,
                   "data.eval_max_length": limit, "model.name": model,
                   "model.hidden_size": hidden}
    return
  for hidden in (32, 64, 128):
    for model in MODELS:
      yield {"model.name": model, "model.hidden_size": hidden}
  yield {"model.name": "transformer", "model.hidden_size": 64}
