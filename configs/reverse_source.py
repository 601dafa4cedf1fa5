"""Reversing the source (Sutskever et al. 2014, Section 3.3).

"Reversing the words in the source sentence ... introduced many short term
dependencies": in a roughly monotonic task the first target words depend on
the first source words, which a forward encoder read longest ago. Reading the
source backwards puts them last, next to the decoder's first steps. Here the
monotonic task is ``copy`` (target = source, like a word-for-word
translation): the encoder–decoder without attention (``rnn_encdec``, GRU; Cho
et al. 2014) and the LSTM sequence-to-sequence model (``seq2seq_lstm``) each
train with the source forward and reversed, and are evaluated by source
length up to 2× the training limit. ``reverse`` is the control, where reading
the source backwards turns the task into a copy with long dependencies and
should hurt.

  python -m experiments.sweep --config configs/reverse_source.py --workdir S --jobs 2

Args: none (CPU default, 5 min 12 s with ``--jobs 2`` on the idle 2-core dev
machine: 2 models × forward/reversed on ``copy`` and on ``reverse`` as the
control, lengths 1..30, hidden 64, 3,000 steps), ``full`` (hidden 64 and 256;
lengths 1..50; 20,000 steps), ``tiny`` (one point of a few steps, for tests).
"""

from attention_jax.config import base_config

ANALYSES = ("by_length",)
REPORT = {
    "title": "Source reversal: exact match against source length",
    "description": (
        "Each line is one trained model, evaluated on about 40 fresh sources of "
        "every length from 1 to twice its training limit (greedy decoding, "
        "exact match)."),
    "series": ("model.name", "model.reverse_source", "model.hidden_size"),
    "panels": "data.task",
    "by_length_metric": "sequence_accuracy",
    "by_length_extra": ("token_accuracy", "bleu"),
    "contrast": "model.reverse_source",
}


def get_config(arg=None):
  config = base_config()
  config.seed = 0
  config.model.name = "rnn_encdec"
  config.model.embed_dim = 32
  config.model.hidden_size = 64
  config.data.task = "copy"
  config.data.vocab_size = 10
  config.data.train_min_length = 1
  config.data.train_max_length = 30
  config.data.eval_min_length = 1
  config.data.eval_max_length = 30
  config.data.eval_examples = 500
  config.train.steps = 3000
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.schedule = "cosine"
  config.train.warmup_steps = 200
  config.train.end_lr_fraction = 0.05
  config.train.grad_clip_norm = 1.0
  config.train.log_every_steps = 250
  config.eval.every_steps = 1500
  config.checkpoint.every_steps = 1500
  if arg == "full":
    config.data.train_max_length = 50
    config.data.eval_max_length = 50
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
    yield {"model.name": "seq2seq_lstm", "model.reverse_source": True}
    return
  sizes = (64, 256) if arg == "full" else (64,)
  for task in ("copy", "reverse"):
    for hidden in sizes:
      for model in ("rnn_encdec", "seq2seq_lstm"):
        for reverse in (False, True):
          yield {"data.task": task, "model.name": model, "model.hidden_size": hidden,
                 "model.reverse_source": reverse}
