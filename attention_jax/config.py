"""The config surface: every known key with its default, and validation.

A config file is a Python file with ``get_config(arg=None)`` that starts from
:func:`base_config` and changes what it needs. ``ml_collections`` adds a
misspelled key silently while the file runs (locking happens afterwards), so
:func:`validate` checks every key against this schema and every value against
its allowed range, and raises :class:`ConfigError` with one line naming the key.

Every key is honoured or refused. Each model declares the ``model.*`` keys it
reads (``config_keys(config)`` on its class) and each data task the ``data.*``
keys it reads; a key that the chosen model or task ignores must keep its
default, else :func:`validate` refuses it, naming the key and the model/task.

One config file may serve several models (its ``model.name`` switched on the
command line, or swept): values meant for one model only go under
``per_model.<model name>.<key>`` (the helper :func:`set_per_model` writes
them). :func:`resolve` copies the chosen model's values into ``model.*`` and
empties ``per_model``; a ``--config.model.KEY=...`` given on the command line
(``explicit``) wins over a per-model value. ``experiments.run``, the sweeps and
``train_and_evaluate`` resolve before they validate, and ``config.json`` holds
the resolved config.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import ml_collections

# Validation reads the registries of the modules that own them (none of these
# imports this module back).
from attention_jax import (
  attention,
  checkpoint,
  data,
  metrics,
  models,
  positions,
  profiling,
  rnn,
  step,
)
from attention_jax.data import batching, long_range, parallel_text, synthetic, tokenizers
from attention_jax.errors import ConfigError
from attention_jax.models import layers, sequence


def base_config() -> ml_collections.ConfigDict:
  """Every known key with its default. Config files start from this."""
  c = ml_collections.ConfigDict()
  c.seed = 0

  c.model = ml_collections.ConfigDict()
  c.model.name = "rnn_encdec"
  c.model.cell = "gru"  # recurrent cell: gru | lstm | elman
  c.model.embed_dim = 32
  c.model.hidden_size = 128
  c.model.num_layers = 1
  c.model.dropout = 0.0
  c.model.readout = "linear"  # linear | maxout (Cho et al. 2014, eq. 12)
  c.model.readout_dim = 0  # maxout units; 0 = hidden_size
  c.model.gru_reset_after = False  # False: Cho et al. 2014 form; True: cuDNN form
  # Recurrent layer execution (attention_jax.rnn.scan; "auto"/0 = the backend's
  # measured default, rnn.BACKEND_DEFAULTS). Same math either way.
  c.model.rnn_hoist_input_projection = "auto"  # auto | true | false
  c.model.rnn_unroll = 0  # lax.scan unroll; 0 = auto
  c.model.rnn_backward = "auto"  # auto | autodiff | fused (custom VJP)
  # Recurrent attention models (seq2seq_lstm, rnnsearch, luong)
  c.model.reverse_source = False  # read the source backwards (Sutskever et al. 2014)
  c.model.attention_dim = 0  # additive / Luong-concat attention units; 0 = hidden_size
  c.model.attention_score = "general"  # Luong et al. 2015 score: dot | general | concat
  c.model.input_feeding = True  # Luong et al. 2015 §3.3: feed h̃_{t-1} to the decoder
  # Transformer / GPT (hidden_size = d_model, num_layers = layers per stack)
  c.model.num_heads = 4
  c.model.mlp_dim = 0  # feed-forward width; 0 = 4 * hidden_size
  c.model.pre_ln = True  # True: pre-LN (GPT-2); False: post-LN (Vaswani 2017)
  c.model.max_positions = 256  # KV-cache length; learned position tables
  c.model.position = "auto"  # auto | sinusoidal | learned | rope | alibi | none
  #   (auto: transformer sinusoidal, gpt learned)
  c.model.attention_impl = "auto"  # auto | einsum | xla | cudnn (attention.py)
  c.model.attention_dropout = 0.0  # dropout on attention weights
  c.model.tie_embeddings = True  # output projection = target embedding transposed
  c.model.scan_layers = False  # gpt: run the blocks as one lax.scan (compiles once)
  c.model.pooling = "last"  # sequence_rnn head reads: last | attention (all states)

  c.data = ml_collections.ConfigDict()
  c.data.task = "reverse"
  c.data.vocab_size = 10  # synthetic tasks: number of content symbols
  # (reorder: number of animate nouns)
  c.data.train_min_length = 1
  c.data.train_max_length = 10
  c.data.eval_min_length = 1
  c.data.eval_max_length = 10
  c.data.eval_examples = 1000
  c.data.reorder_depth = 1  # reorder: nesting depth of relative clauses
  c.data.reorder_clauses = 1  # reorder: most top-level clauses (and/because)
  c.data.max_length = 64  # longest source/target in tokens (real data)
  c.data.overlong = "truncate"  # longer training pairs: truncate | drop
  c.data.bucket_boundaries = ""  # length buckets, e.g. "8,16,32" ("" = one)
  # data.task=files: a TSV (source<TAB>target) or X.src/X.tgt line-aligned pair
  c.data.train_path = ""
  c.data.eval_path = ""
  c.data.test_path = ""  # optional
  # data.task=tfds:NAME (e.g. tfds:wmt14_translate/de-en)
  c.data.tfds_data_dir = ""  # TFDS data dir and cache ("" = TFDS default)
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.test_split = "test"  # "" = none
  c.data.source_lang = ""  # feature keys ("" = the dataset's supervised keys)
  c.data.target_lang = ""
  # real text: tokenizer and vocabulary (built from the training split)
  c.data.tokenizer = "word"  # char | word | sentencepiece
  c.data.min_count = 1  # char/word: rarer tokens become <unk>
  c.data.max_vocab = 0  # char/word: most frequent N (0 = all)
  c.data.sp_vocab_size = 8000  # sentencepiece: pieces per side
  c.data.normalize = "none"  # real text: none | NFC (training text, hypotheses
  #   and references alike)
  c.data.length = 100  # long-range tasks (adding, copy_memory, temporal_order): T

  c.train = ml_collections.ConfigDict()
  c.train.steps = 2000
  c.train.batch_size = 64
  c.train.learning_rate = 3e-3
  c.train.optimizer = "adam"
  c.train.schedule = "cosine"  # constant | cosine | rsqrt
  c.train.warmup_steps = 100
  c.train.end_lr_fraction = 0.05  # cosine decays to this fraction of the peak
  c.train.grad_clip_norm = 1.0  # global-norm clipping; 0 disables
  c.train.weight_decay = 0.0
  c.train.label_smoothing = 0.0
  c.train.log_every_steps = 100
  c.train.skip_nonfinite = False  # skip (do not apply) an update whose loss/grads are NaN/Inf
  c.train.max_consecutive_nonfinite = 10  # with skip_nonfinite: stop after this many in a row
  c.train.num_devices = 0  # data-parallel devices; 0 = all visible
  c.train.compute_dtype = "float32"  # float32 | bfloat16 (params stay float32)
  c.train.profile_steps = ""  # "A:B": jax.profiler trace of steps A..B-1 into tb/ ("" = none)

  c.eval = ml_collections.ConfigDict()
  c.eval.every_steps = 500
  c.eval.batch_size = 256
  # Decoding for evaluation (training-time and experiments.evaluate alike):
  c.eval.beam_size = 1  # 1 = greedy search; K > 1 = beam search
  c.eval.length_penalty = 0.6  # α in lp(Y) = ((5+|Y|)/6)^α (Wu et al. 2016); >= 0
  c.eval.max_length_a = 1.5  # output at most floor(a * source_length + b)
  c.eval.max_length_b = 10.0  #   tokens, EOS included
  c.eval.length_buckets = ""  # source-length bucket edges "10,20,30" (1-10,
  #   11-20, 21-30, 31+); "" = automatic
  c.eval.chrf = False  # training-time eval also reports chrF

  c.checkpoint = ml_collections.ConfigDict()
  c.checkpoint.every_steps = 500
  c.checkpoint.max_to_keep = 3
  c.checkpoint.async_save = True
  c.checkpoint.on_corrupt = "fallback"  # corrupt newest step at resume: fallback | stop

  # Values for one model only, per_model.<model name>.<model key> (e.g.
  # per_model.transformer.num_heads = 8): applied by resolve() when that model
  # is chosen. Empty in a resolved config (config.json).
  c.per_model = ml_collections.ConfigDict()
  return c


PER_MODEL = "per_model"


def set_per_model(config: ml_collections.ConfigDict, models, **values) -> None:
  """Sets ``per_model.<m>.<key> = value`` for each model name in ``models``
  (a name or a sequence of names): values for those models only."""
  for name in [models] if isinstance(models, str) else models:
    if name not in config.per_model:
      config.per_model[name] = ml_collections.ConfigDict()
    for key, value in values.items():
      config.per_model[name][key] = value


def resolve(config: ml_collections.ConfigDict, explicit=()) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``per_model[model.name]`` applied to ``model.*``
  and ``per_model`` emptied (a resolved config is returned unchanged in value).

  ``explicit``: dotted keys given on the command line (``model.num_heads``);
  their values win over per-model ones. Without that, a ``model.*`` key set to
  a non-default value that differs from the chosen model's per-model value is
  a conflict: ConfigError names both, rather than one silently winning.
  Unknown per-model keys are left for :func:`validate` to name.
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
  _validate_per_model(out)  # unknown models/keys are named before they vanish
  with out.unlocked():
    out[PER_MODEL] = ml_collections.ConfigDict()
  return out


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  items = d.items() if hasattr(d, "items") else []
  for k, v in items:
    key = f"{prefix}{k}"
    if isinstance(v, (ml_collections.ConfigDict, dict)):
      out.update(_flatten(v, key + "."))
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
  (which model it names is checked by :func:`validate`).
  """
  schema = _flatten(base_config())
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


def _allowed(key: str, value: Any, allowed) -> None:
  if value not in allowed:
    raise ConfigError(
      f"config key '{key}' has value {value!r}; allowed: " + ", ".join(repr(a) for a in allowed)
    )


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first unknown key or invalid value."""
  schema = _flatten(base_config())
  given = {k: v for k, v in _flatten(config).items() if not k.startswith(PER_MODEL + ".")}
  known = sorted(schema)
  _validate_per_model(config)
  if config.get(PER_MODEL):
    raise ConfigError(
      f"config has per-model values ({', '.join(sorted(config[PER_MODEL]))}) "
      "that are not resolved yet: call attention_jax.config.resolve(config) "
      "first (experiments.run does)"
    )
  for key in sorted(given):
    if key not in schema:
      raise ConfigError(unknown_key_message(key))
  for key in known:
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

  _allowed("model.name", config.model.name, sorted(models.MODELS))
  if not data.is_known_task(config.data.task):
    raise ConfigError(
      f"config key 'data.task' has value {config.data.task!r}; allowed: {data.describe_tasks()}"
    )
  _validate_data(config)
  _allowed("model.cell", config.model.cell, rnn.CELLS)
  _allowed("model.readout", config.model.readout, layers.READOUTS)
  _allowed("model.pooling", config.model.pooling, sequence.POOLINGS)
  is_long_range = config.data.task in data.LONG_RANGE_TASKS
  if is_long_range != (config.model.name in models.SEQUENCE_MODELS):
    raise ConfigError(
      f"config key 'model.name' has value {config.model.name!r}, which cannot "
      f"run data.task {config.data.task!r}; long-range tasks "
      f"({', '.join(data.LONG_RANGE_TASKS)}) need one of: "
      + ", ".join(repr(m) for m in models.SEQUENCE_MODELS)
    )
  if is_long_range:
    least = long_range.MIN_LENGTH[config.data.task]
    if config.data.length < least:
      raise ConfigError(
        f"config key 'data.length' must be >= {least} for "
        f"data.task {config.data.task!r}, got {config.data.length!r}"
      )
  _allowed(
    "model.rnn_hoist_input_projection", config.model.rnn_hoist_input_projection, rnn.HOIST_CHOICES
  )
  _allowed("model.rnn_backward", config.model.rnn_backward, rnn.BACKWARD_CHOICES)
  _allowed("model.attention_score", config.model.attention_score, attention.LUONG_SCORES)
  _allowed("model.attention_impl", config.model.attention_impl, attention.IMPLEMENTATIONS)
  _allowed("model.position", config.model.position, positions.SCHEMES)
  _allowed("train.schedule", config.train.schedule, tuple(step.SCHEDULES))
  _allowed("train.optimizer", config.train.optimizer, tuple(step.OPTIMIZERS))
  _allowed("checkpoint.on_corrupt", config.checkpoint.on_corrupt, checkpoint.ON_CORRUPT)
  _allowed("train.compute_dtype", config.train.compute_dtype, step.COMPUTE_DTYPES)

  positive = (
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
    "train.max_consecutive_nonfinite",
  )
  for key in positive:
    if given[key] <= 0:
      raise ConfigError(f"config key '{key}' must be > 0, got {given[key]!r}")
  nonneg = (
    "model.readout_dim",
    "model.rnn_unroll",
    "model.attention_dim",
    "model.mlp_dim",
    "train.num_devices",
    "train.warmup_steps",
    "train.grad_clip_norm",
    "train.weight_decay",
  )
  for key in nonneg:
    if given[key] < 0:
      raise ConfigError(f"config key '{key}' must be >= 0, got {given[key]!r}")
  for key in ("eval.beam_size",):
    if given[key] < 1:
      raise ConfigError(f"config key '{key}' must be >= 1, got {given[key]!r}")
  for key in ("eval.length_penalty", "eval.max_length_a", "eval.max_length_b"):
    if given[key] < 0:
      raise ConfigError(f"config key '{key}' must be >= 0, got {given[key]!r}")
  if config.eval.max_length_a + config.eval.max_length_b < 1:
    raise ConfigError(
      "config keys 'eval.max_length_a' + 'eval.max_length_b' must "
      "be >= 1 (the output limit of a one-token source)"
    )
  try:
    window = profiling.parse_window(config.train.profile_steps)
  except ValueError as e:
    raise ConfigError(f"config key 'train.profile_steps': {e}") from None
  if window is not None and window[0] > config.train.steps:
    raise ConfigError(
      f"config key 'train.profile_steps' is {config.train.profile_steps!r}, which starts "
      f"after the last step (train.steps={config.train.steps})"
    )
  try:
    metrics.parse_bucket_edges(config.eval.length_buckets)
  except ValueError as e:
    raise ConfigError(f"config key 'eval.length_buckets': {e}") from None
  for key in (
    "model.dropout",
    "model.attention_dropout",
    "train.label_smoothing",
    "train.end_lr_fraction",
  ):
    if not 0.0 <= given[key] < 1.0 and not (key == "train.end_lr_fraction" and given[key] == 1.0):
      raise ConfigError(f"config key '{key}' must be in [0, 1), got {given[key]!r}")
  for split in ("train", "eval"):
    lo, hi = f"data.{split}_min_length", f"data.{split}_max_length"
    if given[hi] < given[lo]:
      raise ConfigError(f"config key '{hi}' ({given[hi]}) must be >= '{lo}' ({given[lo]})")
  _validate_attention_models(config)
  _refuse_ignored_keys(config)
  _refuse_ignored_train_keys(config)
  # train.warmup_steps > train.steps is allowed (a short smoke run of a config
  # with a long warm-up): the schedule cuts the warm-up to the run, and
  # train_and_evaluate logs that it did (step.make_schedule).


# Keys a resumed run may change without --allow_config_change: they steer
# logging, evaluation, checkpointing or recovery, not the training trajectory.
# (A prefix ending in "." covers a section.) train.steps is handled apart.
RESUME_FREE_KEYS = (
  "eval.",
  "checkpoint.",
  "train.log_every_steps",
  "train.skip_nonfinite",
  "train.max_consecutive_nonfinite",
  "train.num_devices",
  "train.profile_steps",
  "data.tfds_data_dir",
  "model.attention_impl",
)


def config_changes(old: dict, new: ml_collections.ConfigDict) -> list[tuple[str, Any, Any]]:
  """``(key, old, new)`` for every leaf that differs; ``old`` is the run's
  ``config.json`` as a dict. A key missing from ``old`` (added to
  ``base_config`` since) counts as its default."""
  defaults = _flatten(base_config())
  a = _flatten(old)
  b = _flatten(json.loads(to_json(new)))
  out = []
  for key in sorted(set(a) | set(b)):
    va = a.get(key, defaults.get(key))
    vb = b.get(key, defaults.get(key))
    if va != vb:
      out.append((key, va, vb))
  return out


def is_resume_free(key: str, old: dict, new: ml_collections.ConfigDict) -> bool:
  """Whether a resumed run may change ``key`` without --allow_config_change.

  ``train.steps`` may change when the schedule does not depend on it (constant,
  rsqrt): training longer then continues the same trajectory. With ``cosine``
  it changes the learning rate of every remaining step, so it needs the flag.
  """
  if key == "train.steps":
    old_schedule = _flatten(old).get("train.schedule")
    return (
      old_schedule in step.STEPS_FREE_SCHEDULES and new.train.schedule in step.STEPS_FREE_SCHEDULES
    )
  return any(key.startswith(p) if p.endswith(".") else key == p for p in RESUME_FREE_KEYS)


def _validate_attention_models(config) -> None:
  m, d = config.model, config.data
  if d.task == "text":
    if m.name != "gpt":
      raise ConfigError(
        f"config key 'model.name' has value {m.name!r}; the "
        "language-model task data.task='text' allows: 'gpt'"
      )
  if m.name not in ("transformer", "gpt"):
    return
  if m.hidden_size % m.num_heads:
    raise ConfigError(
      f"config key 'model.hidden_size' ({m.hidden_size}) must be "
      f"divisible by 'model.num_heads' ({m.num_heads})"
    )
  scheme = positions.resolve(m.position, m.name)
  if scheme == "none" and m.name == "transformer":
    raise ConfigError(
      "config key 'model.position' is 'none', but model "
      "'transformer' has an encoder, which without positions sees "
      "a bag of tokens; 'none' is for the decoder-only 'gpt'"
    )
  if scheme == "rope" and (m.hidden_size // m.num_heads) % 2:
    raise ConfigError(
      f"config key 'model.position' is 'rope', which rotates "
      f"pairs of features: the head dimension 'model.hidden_size' / "
      f"'model.num_heads' ({m.hidden_size // m.num_heads}) must be even"
    )
  if m.name == "gpt" and d.task != "text" and d.task not in data.SYNTHETIC_TASKS:
    raise ConfigError(
      f"config key 'data.task' has value {d.task!r}; model 'gpt' "
      "trains on 'text' (a language model) or on a synthetic task "
      f"(decoder-only sequence to sequence: {data.describe_synthetic()})"
    )
  if m.name == "gpt" and d.task == "text" and d.max_length > m.max_positions:
    raise ConfigError(
      f"config key 'data.max_length' ({d.max_length}) must be <= "
      f"'model.max_positions' ({m.max_positions})"
    )
  if d.task not in data.SYNTHETIC_TASKS:
    return
  (src_w, tgt_w), which = max(
    (synthetic.widths(d.task, d.train_max_length), "train"),
    (synthetic.widths(d.task, d.eval_max_length), "eval"),
    key=lambda x: sum(x[0]),
  )
  # Beam search runs one decode step past the longest output (its final
  # scoring step), so the cache holds the output + 1 position beside it.
  if m.name == "gpt":
    need, what = (
      src_w + tgt_w + 2,
      (
        "the longest source + separator + target + beam search's final step "
        f"({which}: {src_w} + 1 + {tgt_w} + 1)"
      ),
    )
  else:
    need, what = (
      tgt_w + 2,
      (f"the longest target + BOS + beam search's final step ({tgt_w} + 1 + 1)"),
    )
    if scheme == "learned" and src_w > need:
      need, what = src_w, f"the longest source ({src_w}), the learned table's rows"
  if need > m.max_positions:
    raise ConfigError(
      f"config key 'model.max_positions' ({m.max_positions}) must be >= {what} = {need}"
    )


def _validate_per_model(config) -> None:
  """Names an unknown model or key under ``per_model``, or a key the named
  model does not read."""
  per_model = config.get(PER_MODEL) or {}
  defaults = base_config().model
  for name, values in per_model.items():
    if name not in models.MODELS:
      raise ConfigError(
        f"config key '{PER_MODEL}.{name}': no model {name!r}; "
        f"allowed: {', '.join(sorted(models.MODELS))}"
      )
    if not hasattr(values, "items"):
      raise ConfigError(
        f"config key '{PER_MODEL}.{name}' must be a section of model keys, got {values!r}"
      )
    for key in values:
      msg = unknown_key_message(f"{PER_MODEL}.{name}.{key}")
      if msg:
        raise ConfigError(msg)
      if key == "name":
        raise ConfigError(
          f"config key '{PER_MODEL}.{name}.name': the model name cannot be a per-model value"
        )
    trial = ml_collections.ConfigDict(config.to_dict())
    trial.model = base_config().model
    trial.model.name = name
    for key, value in values.items():
      trial.model[key] = value
    reads = models.config_keys(trial)
    for key, value in values.items():
      if key not in reads and value != defaults[key]:
        raise ConfigError(
          f"config key '{PER_MODEL}.{name}.{key}': model {name!r} does not "
          f"read model.{key} (it reads: {', '.join(sorted(reads))})"
        )


def _refuse_ignored_keys(config) -> None:
  """A ``model.*``/``data.*`` key away from its default that the chosen model
  or data task does not read is an error naming both."""
  defaults = base_config()
  for section, reads, owner in (
    ("model", models.config_keys(config), f"model {config.model.name!r}"),
    ("data", data.config_keys(config), f"data.task {config.data.task!r}"),
  ):
    for key, default in defaults[section].items():
      if key in ("name", "task") or key in reads:
        continue
      value = config[section][key]
      if value != default:
        hint = (
          f"; in a config file serving several models, put it under '{PER_MODEL}.<model>.{key}'"
          if section == "model"
          else ""
        )
        raise ConfigError(
          f"config key '{section}.{key}' is {value!r}, but {owner} does not "
          f"read it: leave it at its default {default!r}{hint}"
        )


def _refuse_ignored_train_keys(config) -> None:
  """``train.weight_decay`` without ``adamw``, ``train.end_lr_fraction``
  without ``cosine``: refused away from their defaults (nothing reads them)."""
  t, defaults = config.train, base_config().train
  for owner_key, table in (("optimizer", step.OPTIMIZER_KEYS), ("schedule", step.SCHEDULE_KEYS)):
    owner = t[owner_key]
    for keys in table.values():
      for key in keys:
        if key not in table.get(owner, ()) and t[key] != defaults[key]:
          readers = sorted(o for o, ks in table.items() if key in ks)
          raise ConfigError(
            f"config key 'train.{key}' is {t[key]!r}, but train.{owner_key} "
            f"{owner!r} does not read it (only {', '.join(map(repr, readers))} "
            f"does): leave it at its default {defaults[key]!r}"
          )


def _validate_data(config) -> None:
  d = config.data
  _allowed("data.tokenizer", d.tokenizer, tokenizers.KINDS)
  _allowed("data.overlong", d.overlong, parallel_text.OVERLONG)
  _allowed("data.normalize", d.normalize, parallel_text.NORMALIZATIONS)
  for key, lo in (
    ("min_count", 1),
    ("max_vocab", 0),
    ("sp_vocab_size", 8),
    ("reorder_depth", 0),
    ("reorder_clauses", 1),
  ):
    if d[key] < lo:
      raise ConfigError(f"config key 'data.{key}' must be >= {lo}, got {d[key]!r}")
  try:
    batching.parse_boundaries(d.bucket_boundaries, d.max_length)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if d.task == "files":
    for key in ("train_path", "eval_path"):
      if not d[key]:
        raise ConfigError(
          f"config key 'data.{key}' is empty; data.task='files' needs a TSV or a .src/.tgt pair"
        )
  if d.task.startswith("tfds:"):
    for key in ("train_split", "eval_split"):
      if not d[key]:
        raise ConfigError(
          f"config key 'data.{key}' is empty; data.task={d.task!r} needs a TFDS split name"
        )


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
