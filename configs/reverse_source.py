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

Args: none (CPU default, 3 seeds per point, within about 40 min with
``--jobs 2`` on the 2-core dev machine — docs/sweeps.md: 2 models ×
forward/reversed on ``copy`` and on ``reverse`` as the control, lengths
1..30, hidden 64, 3,000 steps; results: docs/results.md), ``full`` (hidden 64 and 256;
lengths 1..50; 20,000 steps), ``tiny`` (one point of a few steps, for tests).
"""

from configs import common

ANALYSES = ("by_length",)
REPORT = {
  "title": "Source reversal: exact match against source length",
  "description": (
    "Each line is one model, the mean over its seeds, evaluated on 100 fresh "
    "sources of every length from 1 to twice its training limit per seed "
    "(greedy decoding, exact match)."
  ),
  "series": ("model.name", "model.reverse_source", "model.hidden_size"),
  "panels": "data.task",
  "by_length_metric": "sequence_accuracy",
  "by_length_extra": ("token_accuracy", "bleu"),
  "contrast": "model.reverse_source",
}


def get_config(arg=None):
  config = common.length_sweep("copy")
  return common.apply_mode(config, arg, __file__, full=full, tiny=common.length_sweep_tiny)


def full(config):
  """Lengths 1–50 at the sweeps' GPU size."""
  common.full_synthetic(config)
  common.lengths(config, 50)


def sweep(arg=None):
  mode = common.parse_mode(arg, __file__, "full", "tiny")
  if mode == "tiny":
    yield {"model.name": "seq2seq_lstm", "model.reverse_source": True}
    return
  sizes = (64, 256) if mode == "full" else (64,)
  for task in ("copy", "reverse"):
    for hidden in sizes:
      for model in ("rnn_encdec", "seq2seq_lstm"):
        for reverse in (False, True):
          yield {
            "data.task": task,
            "model.name": model,
            "model.hidden_size": hidden,
            "model.reverse_source": reverse,
          }


def seeds(arg=None):
  """Three seeds per point (``tiny``: one, for tests); ``--seeds N`` overrides."""
  return (0,) if common.parse_mode(arg, __file__, "full", "tiny") == "tiny" else (0, 1, 2)
