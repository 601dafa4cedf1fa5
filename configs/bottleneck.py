"""The fixed-length bottleneck: accuracy against source length.

Bahdanau et al. 2014 (Fig. 2) and Cho et al. 2014 (Section 4, "the performance
of the basic encoder–decoder deteriorates rapidly as the length of an input
sentence increases"): an RNN encoder–decoder (``rnn_encdec``) squeezes the
source into one ``hidden_size`` vector, RNNsearch (``rnnsearch``) attends over
every encoder state, and the Transformer (``transformer``) attends without
recurrence. Each model × hidden size × training-length limit trains on
``reverse`` (the first source symbol is needed last) and is evaluated on
sources up to 2× the training limit (``eval/by_length.csv``, with the
attention models' alignment accuracy against the gold anti-diagonal); linear
probes (``attention_jax.probe``) read what each recurrent point's decoder
initial state — the context vector — still holds (``probe/``), and the report
compares them across hidden sizes.

  python -m experiments.sweep --config configs/bottleneck.py --workdir S --jobs 2
  python -m experiments.sweep --config configs/bottleneck.py:full --workdir S   # GPU/TPU
  python -m experiments.run --config configs/bottleneck.py --workdir W \\
      --config.model.name=rnnsearch                                  # one point

Args: none (CPU default, 3 seeds per point, sized for about 40 min with
``--jobs 2`` on the 2-core dev machine — docs/sweeps.md: ``rnn_encdec`` and
``rnnsearch`` at hidden 32 and 128 (64 is cut to fit the seeds) and one
``transformer`` (d_model 64, 1 layer, 4 heads); lengths 1..30, 3,000 steps —
with shorter sources and longer training the encoder–decoder catches up;
results and the prototypes behind these sizes: docs/results.md),
``full`` (4 sizes × 3 models × limits 10/20/30/50 × ``reverse`` and
``reorder``; 20k steps), ``tiny`` (one ``rnnsearch`` point of a few steps,
for tests: it exercises the probes and the alignment columns).
"""

from configs import common

MODELS = ("rnn_encdec", "rnnsearch")
FULL_MODELS = ("rnn_encdec", "rnnsearch", "transformer")
ANALYSES = ("by_length", "probe")
REPORT = {
  "title": "Bottleneck: exact match against source length",
  "description": (
    "Each line is one model, the mean over its seeds, evaluated on 100 fresh "
    "sources of every length from 1 to twice its training limit per seed "
    "(greedy decoding, exact match of the whole output)."
  ),
  "series": ("model.name", "model.hidden_size"),
  "panels": "data.train_max_length",
  "by_length_metric": "sequence_accuracy",
  "by_length_extra": ("token_accuracy", "bleu"),
  "heatmap": {"where": {"model.name": "rnn_encdec"}, "rows": "model.hidden_size"},
  "contrast": "model.name",
  "extra": ("probe", "alignment"),
}


def get_config(arg=None):
  config = common.length_sweep("reverse")
  return common.apply_mode(
    config, arg, __file__, full=common.full_synthetic, tiny=common.length_sweep_tiny
  )


def sweep(arg=None):
  mode = common.parse_mode(arg, __file__, "full", "tiny")
  if mode == "tiny":
    yield {"model.name": "rnnsearch", "model.hidden_size": 16}
    return
  if mode == "full":
    for task in ("reverse", "reorder"):
      for limit in (10, 20, 30, 50):
        for model in FULL_MODELS:
          for hidden in (32, 64, 128, 256):
            yield {
              "data.task": task,
              "data.train_max_length": limit,
              "data.eval_max_length": limit,
              "model.name": model,
              "model.hidden_size": hidden,
            }
    return
  for hidden in (32, 128):  # 64 cut: 3 seeds of 5 points fit ~40 min on 2 cores
    for model in MODELS:
      yield {"model.name": model, "model.hidden_size": hidden}
  yield {"model.name": "transformer", "model.hidden_size": 64}


def seeds(arg=None):
  """Three seeds per point (``tiny``: one, for tests); ``--seeds N`` overrides."""
  return (0,) if common.parse_mode(arg, __file__, "full", "tiny") == "tiny" else (0, 1, 2)
