"""The config surface: every known key with its default, and the per-model values.

A config file's ``get_config(arg=None)`` starts from :func:`base_config`. ``ml_collections``
adds a misspelled key silently while the file runs, so :func:`check_schema` names every
unknown or missing key and every value of the wrong type or range. Values meant for one
model go under ``per_model.<model>.<key>`` (:func:`set_per_model`); :func:`apply_per_model`
copies the chosen model's into ``model.*``, a command-line ``--config.model.KEY`` winning.
The checks that read the registries live in :mod:`attention_jax.validation`.
Documented in docs/configs.md.
"""

from __future__ import annotations

import difflib
import json
import math
from typing import Any

import ml_collections

from attention_jax.errors import ConfigError


def base_config() -> ml_collections.ConfigDict:
  """Every known key with its default. Config files start from this."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = "rnn_encdec"
  config.model.cell = "gru"  # recurrent cell: gru | lstm | elman
  config.model.embed_dim = 32
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.model.dropout = 0.0
  config.model.readout = "linear"  # linear | maxout (Cho et al. 2014, eq. 12)
  config.model.readout_dim = 0  # maxout units; 0 = hidden_size
  config.model.gru_reset_after = False  # False: Cho et al. 2014 form; True: cuDNN form
  # Recurrent layer execution (attention_jax.rnn.scan; "auto"/0 = the backend's
  # measured default, rnn.BACKEND_DEFAULTS). Same math either way.
  config.model.rnn_hoist_input_projection = "auto"  # auto | true | false
  config.model.rnn_unroll = 0  # lax.scan unroll; 0 = auto
  config.model.rnn_backward = "auto"  # auto | autodiff | fused (custom VJP)
  # Recurrent attention models (seq2seq_lstm, rnnsearch, luong)
  config.model.reverse_source = False  # read the source backwards (Sutskever et al. 2014)
  config.model.attention_dim = 0  # additive / Luong-concat attention units; 0 = hidden_size
  config.model.attention_score = "general"  # Luong et al. 2015 score: dot | general | concat
  config.model.input_feeding = True  # Luong et al. 2015 §3.3: feed h̃_{t-1} to the decoder
  # Transformer / GPT (hidden_size = d_model, num_layers = layers per stack)
  config.model.num_heads = 4
  config.model.mlp_dim = 0  # feed-forward width; 0 = 4 * hidden_size
  config.model.pre_ln = True  # True: pre-LN (GPT-2); False: post-LN (Vaswani 2017)
  config.model.max_positions = 256  # KV-cache length; learned position tables
  config.model.position = "auto"  # auto | sinusoidal | learned | rope | alibi | none
  #   (auto: transformer sinusoidal, gpt learned)
  config.model.attention_impl = "auto"  # auto | einsum | xla | cudnn (attention.py)
  config.model.attention_dropout = 0.0  # dropout on attention weights
  config.model.tie_embeddings = True  # output projection = target embedding transposed
  config.model.scan_layers = False  # gpt: run the blocks as one lax.scan (compiles once)
  config.model.pooling = "last"  # sequence_rnn head reads: last | attention (all states)

  config.data = ml_collections.ConfigDict()
  config.data.task = "reverse"
  config.data.vocab_size = 10  # synthetic tasks: number of content symbols
  # (reorder: number of animate nouns)
  config.data.train_min_length = 1
  config.data.train_max_length = 10
  config.data.eval_min_length = 1
  config.data.eval_max_length = 10
  config.data.eval_examples = 1000
  config.data.reorder_depth = 1  # reorder: nesting depth of relative clauses
  config.data.reorder_clauses = 1  # reorder: most top-level clauses (and/because)
  config.data.max_length = 64  # longest source/target in tokens (real data)
  config.data.overlong = "truncate"  # longer training pairs: truncate | drop
  config.data.bucket_boundaries = ""  # length buckets, e.g. "8,16,32" ("" = one)
  # data.task=files: a TSV (source<TAB>target) or X.src/X.tgt line-aligned pair
  config.data.train_path = ""
  config.data.eval_path = ""
  config.data.test_path = ""  # optional
  # data.task=tfds:NAME (e.g. tfds:wmt14_translate/de-en)
  config.data.tfds_data_dir = ""  # TFDS data dir and cache ("" = TFDS default)
  config.data.train_split = "train"
  config.data.eval_split = "validation"
  config.data.test_split = "test"  # "" = none
  config.data.source_lang = ""  # feature keys ("" = the dataset's supervised keys)
  config.data.target_lang = ""
  # real text: tokenizer and vocabulary (built from the training split)
  config.data.tokenizer = "word"  # char | word | sentencepiece
  config.data.min_count = 1  # char/word: rarer tokens become <unk>
  config.data.max_vocab = 0  # char/word: most frequent N (0 = all)
  config.data.sp_vocab_size = 8000  # sentencepiece: pieces per side
  config.data.normalize = "none"  # real text: none | NFC (training text, hypotheses
  #   and references alike)
  config.data.length = 100  # long-range tasks (adding, copy_memory, temporal_order): T

  config.train = ml_collections.ConfigDict()
  config.train.steps = 2000
  config.train.batch_size = 64
  config.train.learning_rate = 3e-3
  config.train.optimizer = "adam"
  config.train.schedule = "cosine"  # constant | cosine | rsqrt
  config.train.warmup_steps = 100
  config.train.end_lr_fraction = 0.05  # cosine decays to this fraction of the peak
  config.train.grad_clip_norm = 1.0  # global-norm clipping; 0 disables
  config.train.weight_decay = 0.0
  config.train.label_smoothing = 0.0
  config.train.log_every_steps = 100
  config.train.skip_nonfinite = False  # skip (do not apply) an update whose loss/grads are NaN/Inf
  config.train.max_consecutive_nonfinite = 10  # with skip_nonfinite: stop after this many in a row
  config.train.num_devices = 0  # data-parallel devices; 0 = all visible
  config.train.compute_dtype = "float32"  # float32 | bfloat16 (params stay float32)
  config.train.profile_steps = ""  # "A:B": jax.profiler trace of steps A..B-1 into tb/ ("" = none)

  config.eval = ml_collections.ConfigDict()
  config.eval.every_steps = 500
  config.eval.batch_size = 256
  # Decoding for evaluation (training-time and experiments.evaluate alike):
  config.eval.beam_size = 1  # 1 = greedy search; K > 1 = beam search
  config.eval.length_penalty = 0.6  # α in lp(Y) = ((5+|Y|)/6)^α (Wu et al. 2016); >= 0
  config.eval.max_length_a = 1.5  # output at most floor(a * source_length + b)
  config.eval.max_length_b = 10.0  #   tokens, EOS included
  config.eval.length_buckets = ""  # source-length bucket edges "10,20,30" (1-10,
  #   11-20, 21-30, 31+); "" = automatic
  config.eval.chrf = False  # training-time eval also reports chrF

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_steps = 500
  config.checkpoint.max_to_keep = 3
  config.checkpoint.async_save = True
  config.checkpoint.on_corrupt = "fallback"  # corrupt newest step at resume: fallback | stop
  # The steps kept: the max_to_keep newest, and the best_to_keep best by an
  # eval metric (--step best): "" = the objective's (bleu, loss for language
  # models, mse, sequence_accuracy); best_mode max | min, "" = the metric's way.
  config.checkpoint.best_to_keep = 1
  config.checkpoint.best_metric = ""
  config.checkpoint.best_mode = ""

  # Values for one model only, per_model.<model name>.<model key> (e.g.
  # per_model.transformer.num_heads = 8): applied by apply_per_model() when that model
  # is chosen. Empty in a resolved config (config.json).
  config.per_model = ml_collections.ConfigDict()
  return config


PER_MODEL = "per_model"


def set_per_model(config: ml_collections.ConfigDict, models, **values) -> None:
  """Sets ``per_model.<m>.<key> = value`` for each model name in ``models``
  (a name or a sequence of names): values for those models only."""
  for name in [models] if isinstance(models, str) else models:
    if name not in config.per_model:
      config.per_model[name] = ml_collections.ConfigDict()
    for key, value in values.items():
      config.per_model[name][key] = value


def apply_per_model(config: ml_collections.ConfigDict, explicit=()) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``per_model[model.name]`` applied to ``model.*``
  and ``per_model`` emptied (a resolved config is returned unchanged in value).

  ``explicit``: dotted keys given on the command line (``model.num_heads``);
  their values win over per-model ones. Without that, a ``model.*`` key set to
  a non-default value that differs from the chosen model's per-model value is
  a conflict: ConfigError names both, rather than one silently winning.
  Unknown models and keys under ``per_model`` are for
  ``validation.check_per_model`` to name, before this empties it.
  """
  out = config.copy_and_resolve_references()
  per_model = out.get(PER_MODEL)
  if not per_model:
    return out
  defaults = base_config().model
  explicit = set(explicit)
  chosen = per_model.get(out.model.name, {})
  for key, value in chosen.items() if chosen else ():
    if key not in defaults:
      continue
    current = out.model[key]
    if f"model.{key}" in explicit:
      continue
    if current != defaults[key] and current != value:
      raise ConfigError(
        f"config key 'model.{key}' is {current!r} but "
        f"'{PER_MODEL}.{out.model.name}.{key}' is {value!r}: set only one "
        f"(on the command line, --config.model.{key}=... wins)"
      )
    if isinstance(defaults[key], float) and isinstance(value, int):
      value = float(value)
    out.model[key] = value
  with out.unlocked():
    out[PER_MODEL] = ml_collections.ConfigDict()
  return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  """A nested config or dict as ``{"section.key": value}`` (leaves only)."""
  out = {}
  items = d.items() if hasattr(d, "items") else []
  for k, v in items:
    key = f"{prefix}{k}"
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.update(flatten(v, key + "."))
    else:
      out[key] = v
  return out


def _suggest(key: str, known: list[str]) -> str:
  close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
  if not close:  # try the last component alone: train.stpes -> train.steps
    leaf = key.rsplit(".", 1)[-1]
    leaves = {k.rsplit(".", 1)[-1]: k for k in known}
    c = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.6)
    close = [leaves[c[0]]] if c else []
  return f" (did you mean '{close[0]}'?)" if close else ""


def unknown_key_message(key: str) -> str | None:
  """None if ``key`` (dotted) is a known leaf or section; else an error text.

  ``per_model.<model>.<model key>`` is known when ``model.<model key>`` is
  (which model it names is checked by ``validation.check_per_model``).
  """
  schema = flatten(base_config())
  sections = {k.rsplit(".", 1)[0] for k in schema if "." in k}
  if key in schema or key in sections or key == PER_MODEL:
    return None
  parts = key.split(".")
  if parts[0] == PER_MODEL and len(parts) in (2, 3):
    if len(parts) == 2 or f"model.{parts[2]}" in schema:
      return None
    model_keys = sorted(k for k in schema if k.startswith("model."))
    return f"unknown config key '{key}': '{parts[2]}' is not a model key" + _suggest(
      f"model.{parts[2]}", model_keys
    )
  return f"unknown config key '{key}'{_suggest(key, sorted(schema))}"


def check_schema(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first unknown or missing key, or value of
  the wrong type (the schema is :func:`base_config`)."""
  schema = flatten(base_config())
  given = {k: v for k, v in flatten(config).items() if not k.startswith(PER_MODEL + ".")}
  if config.get(PER_MODEL):
    raise ConfigError(
      f"config has per-model values ({', '.join(sorted(config[PER_MODEL]))}) "
      "that are not applied yet: call attention_jax.validation.prepare(config) "
      "first (experiments.run does)"
    )
  for key in sorted(given):
    if key not in schema:
      raise ConfigError(unknown_key_message(key))
  for key in sorted(schema):
    if key not in given:
      raise ConfigError(
        f"config is missing key '{key}' (start from attention_jax.config.base_config())"
      )
  for key, default in schema.items():
    value = given[key]
    if isinstance(default, bool):
      ok = isinstance(value, bool)
    elif isinstance(default, int):
      ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
      ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
      ok = isinstance(value, type(default))
    if not ok:
      raise ConfigError(
        f"config key '{key}' must be of type {type(default).__name__}, got {value!r}"
      )
    if isinstance(default, float) and not math.isfinite(value):
      raise ConfigError(f"config key '{key}' must be a finite number, got {value!r}")


def allowed(key: str, value: Any, choices) -> None:
  """ConfigError naming ``key`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ConfigError(
      f"config key '{key}' has value {value!r}; allowed: " + ", ".join(repr(a) for a in choices)
    )


_POSITIVE = (
  "model.embed_dim",
  "model.hidden_size",
  "model.num_layers",
  "model.num_heads",
  "model.max_positions",
  "data.vocab_size",
  "data.train_min_length",
  "data.eval_min_length",
  "data.eval_examples",
  "data.max_length",
  "train.steps",
  "train.batch_size",
  "train.learning_rate",
  "train.log_every_steps",
  "eval.every_steps",
  "eval.batch_size",
  "checkpoint.every_steps",
  "checkpoint.max_to_keep",
  "checkpoint.best_to_keep",
  "train.max_consecutive_nonfinite",
)
_NONNEGATIVE = (
  "model.readout_dim",
  "model.rnn_unroll",
  "model.attention_dim",
  "model.mlp_dim",
  "train.num_devices",
  "train.warmup_steps",
  "train.grad_clip_norm",
  "train.weight_decay",
  "eval.length_penalty",
  "eval.max_length_a",
  "eval.max_length_b",
)
_AT_LEAST = {
  "eval.beam_size": 1,
  "data.min_count": 1,
  "data.max_vocab": 0,
  "data.sp_vocab_size": 8,
  "data.reorder_depth": 0,
  "data.reorder_clauses": 1,
}
# In [0, 1); train.end_lr_fraction may also be 1 (no decay).
_FRACTIONS = (
  "model.dropout",
  "model.attention_dropout",
  "train.label_smoothing",
  "train.end_lr_fraction",
)


def check_ranges(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first number out of its range (a config
  that passed :func:`check_schema`)."""
  given = flatten(config)
  for key in _POSITIVE:
    if given[key] <= 0:
      raise ConfigError(f"config key '{key}' must be > 0, got {given[key]!r}")
  for key in _NONNEGATIVE:
    if given[key] < 0:
      raise ConfigError(f"config key '{key}' must be >= 0, got {given[key]!r}")
  for key, least in _AT_LEAST.items():
    if given[key] < least:
      raise ConfigError(f"config key '{key}' must be >= {least}, got {given[key]!r}")
  if config.eval.max_length_a + config.eval.max_length_b < 1:
    raise ConfigError(
      "config keys 'eval.max_length_a' + 'eval.max_length_b' must "
      "be >= 1 (the output limit of a one-token source)"
    )
  for key in _FRACTIONS:
    if not 0.0 <= given[key] < 1.0 and not (key == "train.end_lr_fraction" and given[key] == 1.0):
      raise ConfigError(f"config key '{key}' must be in [0, 1), got {given[key]!r}")
  for split in ("train", "eval"):
    lo, hi = f"data.{split}_min_length", f"data.{split}_max_length"
    if given[hi] < given[lo]:
      raise ConfigError(f"config key '{hi}' ({given[hi]}) must be >= '{lo}' ({given[lo]})")


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Rebuilds a config from its JSON without executing any Python."""
  return ml_collections.ConfigDict(json.loads(text))


def with_defaults(given: dict) -> ml_collections.ConfigDict:
  """``given`` (a saved config's dict) over :func:`base_config`: keys added to
  the schema since it was saved take their defaults; unknown keys are kept
  (for :func:`validate` to name)."""
  merged = base_config().to_dict()

  def fill(dst: dict, src: dict) -> None:
    for k, v in src.items():
      if isinstance(v, dict) and isinstance(dst.get(k), dict) and v:
        fill(dst[k], v)
      else:
        dst[k] = v

  fill(merged, given)
  return ml_collections.ConfigDict(merged)
