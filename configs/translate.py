"""Real parallel text: one recipe, four models (the bottleneck on real text is one flag).

  python -m experiments.run --config configs/translate.py --workdir A \
      --config.data.train_path=train.tsv --config.data.eval_path=dev.tsv \
      --config.data.test_path=test.tsv
  python -m experiments.run --config configs/translate.py --workdir B ... \
      --config.model.name=rnn_encdec          # or luong, transformer
  python -m experiments.compare --workdirs A B --split test --beam 4

Each path is a TSV (``source<TAB>target``) or an ``X.src``/``X.tgt`` pair.
``model.name`` switches between ``rnnsearch`` (default; Bahdanau et al.
2014), ``rnn_encdec`` (Cho et al. 2014), ``luong`` (Luong et al. 2015) and
``transformer`` (Vaswani et al. 2017) with nothing else changed.

The defaults aim at a corpus of ~20k short human-translated pairs on a
2-core CPU in about 15 minutes; they were tuned on the dev split of the
gettext English→German corpus (``experiments.make_corpus``; the runs behind
them: docs/evaluation.md, "The real-text recipe"). Why they are what they are:

* text: SentencePiece with no normalization of its own (decoding restores
  spacing exactly), Unicode NFC on references and hypotheses alike, no
  lower-casing; over-long training pairs are dropped;
* length buckets: a short sentence is padded to its bucket, not to
  ``data.max_length``, with one compiled step per bucket;
* one hidden size for every model (the Transformer's d_model), so that the
  four cost about the same per step on a CPU; per-model values under
  ``per_model`` (maxout readout: Bahdanau et al. 2014, Cho et al. 2014);
* a warm-up then cosine decay (a constant rate lets Adam spike once a model
  has converged); dev BLEU and chrF against the raw references, by source
  length in words (about 5 equal-count buckets at the split's own length
  quantiles); the best dev-BLEU checkpoint is kept beside the latest
  (``evaluate``/``compare --step best``);
* no dropout and no label smoothing at this size (they did not help on dev
  in 2,000 steps; ``:full`` has both).

``:full``: a GPU-sized version (bigger vocabularies, model and batch; ten
times the steps).
``:tiny``: seconds on a CPU, on the small English→German fixtures written for
the tests in ``tests/data/`` (paths preset).
"""

import os

from attention_jax.config import base_config, set_per_model
from configs import common

MODELS = ("rnnsearch", "rnn_encdec", "luong", "transformer")
_FIXTURES = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "data"
)


def get_config(arg=None):
  config = base_config()
  config.data.update(
    task="files",
    tokenizer="sentencepiece",
    sp_vocab_size=4000,
    normalize="NFC",
    max_length=48,
    overlong="drop",
    bucket_boundaries="16,24,32",
  )
  # Read by every model (the Transformer's d_model is hidden_size).
  config.model.update(name="rnnsearch", hidden_size=128, dropout=0.0)
  # Values for some of the models only (config.apply_per_model applies the chosen
  # model's; each model reads only its own keys).
  set_per_model(config, ("rnnsearch", "rnn_encdec", "luong"), embed_dim=128)
  # Maxout readout: Bahdanau et al. 2014, appendix A.2.2; Cho et al. 2014, eq. 12.
  set_per_model(config, ("rnnsearch", "rnn_encdec"), readout="maxout")
  set_per_model(config, "luong", num_layers=2)  # 2-layer LSTM stack
  set_per_model(config, "transformer", num_layers=2, num_heads=4, mlp_dim=512)
  config.train.update(
    steps=2000,
    batch_size=64,
    learning_rate=2e-3,
    schedule="cosine",
    warmup_steps=200,
    end_lr_fraction=0.05,
    grad_clip_norm=1.0,
    label_smoothing=0.0,
    log_every_steps=100,
  )
  config.eval.update(beam_size=1, chrf=True)  # length buckets: the test set's quantiles
  config.eval.every_steps = config.checkpoint.every_steps = 500
  config.checkpoint.max_to_keep = 2
  return common.apply_mode(config, arg, __file__, full=full, tiny=tiny)


def full(config):
  """GPU sizes: bigger vocabularies, model, batch and regularization (dropout,
  label smoothing), ten times the steps."""
  config.data.update(sp_vocab_size=8000, max_length=160, bucket_boundaries="16,24,32,48,64,96,128")
  config.model.update(hidden_size=512, dropout=0.3)
  set_per_model(config, ("rnnsearch", "rnn_encdec", "luong"), embed_dim=512)
  set_per_model(config, "transformer", num_layers=6, num_heads=8, mlp_dim=2048)
  config.train.update(
    batch_size=128, steps=20000, learning_rate=1e-3, warmup_steps=1000, label_smoothing=0.1
  )
  config.eval.every_steps = config.checkpoint.every_steps = 2000


def tiny(config):
  """Seconds on a CPU: the fixtures in tests/data (238/40/40 pairs), a small
  model, one bucket (one compiled step), 150 steps."""
  config.data.update(
    train_path=os.path.join(_FIXTURES, "ende_train.tsv"),
    eval_path=os.path.join(_FIXTURES, "ende_dev.tsv"),
    test_path=os.path.join(_FIXTURES, "ende_test.tsv"),
    sp_vocab_size=160,
    max_length=48,
    bucket_boundaries="",
  )
  config.model.update(hidden_size=64, dropout=0.0)
  set_per_model(config, ("rnnsearch", "rnn_encdec", "luong"), embed_dim=32)
  set_per_model(config, ("luong", "transformer"), num_layers=1)
  set_per_model(config, "transformer", mlp_dim=128)
  config.train.update(
    steps=150, batch_size=16, learning_rate=1e-2, warmup_steps=10, log_every_steps=50
  )
  config.eval.length_buckets = "5,10"
  config.eval.every_steps = config.checkpoint.every_steps = 50
  config.checkpoint.max_to_keep = 1
