"""Validation of a config against the registries of the modules that own them.

:mod:`attention_jax.config` checks the schema (unknown and missing keys, types,
ranges); here the values are checked against what the models, data tasks,
metrics, optimizers and checkpointing accept, and a ``model.*``/``data.*``/
``train.*`` key that the chosen model, task, optimizer or schedule does not
read must keep its default (the keys a model reads come from its
hyperparameter dataclass: :func:`attention_jax.model_setup.model_keys_read`).
Each error is a :class:`ConfigError` of one line naming the key.
"""

from __future__ import annotations

import ml_collections

from attention_jax import (
  attention,
  checkpoint,
  data,
  metrics,
  model_setup,
  models,
  objectives,
  positions,
  profiling,
  rnn,
  step,
)
from attention_jax import config as config_lib
from attention_jax.config import PER_MODEL, allowed, base_config
from attention_jax.data import batching, long_range, parallel_text, synthetic, tokenizers
from attention_jax.errors import ConfigError
from attention_jax.models import layers, sequence


def prepare(config: ml_collections.ConfigDict, explicit=()) -> ml_collections.ConfigDict:
  """The config a run uses: ``per_model`` checked (:func:`check_per_model`)
  and applied (:func:`config.apply_per_model`, ``explicit`` as there), then
  validated (:func:`validate`)."""
  check_per_model(config)
  config = config_lib.apply_per_model(config, explicit)
  validate(config)
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError naming the first unknown key or invalid value."""
  check_per_model(config)
  config_lib.check_schema(config)
  allowed("model.name", config.model.name, sorted(models.MODELS))
  if not data.is_known_task(config.data.task):
    raise ConfigError(
      f"config key 'data.task' has value {config.data.task!r}; allowed: {data.describe_tasks()}"
    )
  _check_data(config)
  model = config.model
  allowed("model.cell", model.cell, rnn.CELLS)
  allowed("model.readout", model.readout, layers.READOUTS)
  allowed("model.pooling", model.pooling, sequence.POOLINGS)
  _check_long_range(config)
  allowed("model.rnn_hoist_input_projection", model.rnn_hoist_input_projection, rnn.HOIST_CHOICES)
  allowed("model.rnn_backward", model.rnn_backward, rnn.BACKWARD_CHOICES)
  allowed("model.attention_score", model.attention_score, attention.LUONG_SCORES)
  allowed("model.attention_impl", model.attention_impl, attention.IMPLEMENTATIONS)
  allowed("model.position", model.position, positions.SCHEMES)
  allowed("train.schedule", config.train.schedule, tuple(step.SCHEDULES))
  allowed("train.optimizer", config.train.optimizer, tuple(step.OPTIMIZERS))
  allowed("checkpoint.on_corrupt", config.checkpoint.on_corrupt, checkpoint.ON_CORRUPT)
  allowed("train.compute_dtype", config.train.compute_dtype, step.COMPUTE_DTYPES)
  config_lib.check_ranges(config)
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
  try:
    batching.parse_boundaries(config.data.bucket_boundaries, config.data.max_length)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  objectives.best_metric(config, data.objective_name(config.data.task))
  _check_attention_models(config)
  _refuse_ignored_keys(config)
  _refuse_ignored_train_keys(config)
  # train.warmup_steps > train.steps is allowed (a short smoke run of a config
  # with a long warm-up): the schedule cuts the warm-up to the run, and
  # train_and_evaluate logs that it did (step.make_schedule).


def _check_long_range(config) -> None:
  """Long-range tasks need a sequence model (and it them), at their least length."""
  is_long_range = config.data.task in data.LONG_RANGE_TASKS
  if is_long_range != (config.model.name in models.SEQUENCE_MODELS):
    raise ConfigError(
      f"config key 'model.name' has value {config.model.name!r}, which cannot "
      f"run data.task {config.data.task!r}; long-range tasks "
      f"({', '.join(data.LONG_RANGE_TASKS)}) need one of: "
      + ", ".join(repr(name) for name in models.SEQUENCE_MODELS)
    )
  if is_long_range:
    least = long_range.MIN_LENGTH[config.data.task]
    if config.data.length < least:
      raise ConfigError(
        f"config key 'data.length' must be >= {least} for "
        f"data.task {config.data.task!r}, got {config.data.length!r}"
      )


def _check_attention_models(config) -> None:
  model, data_keys = config.model, config.data
  if data_keys.task == "text":
    if model.name != "gpt":
      raise ConfigError(
        f"config key 'model.name' has value {model.name!r}; the "
        "language-model task data.task='text' allows: 'gpt'"
      )
  if model.name not in ("transformer", "gpt"):
    return
  if model.hidden_size % model.num_heads:
    raise ConfigError(
      f"config key 'model.hidden_size' ({model.hidden_size}) must be "
      f"divisible by 'model.num_heads' ({model.num_heads})"
    )
  scheme = positions.scheme_for(model.position, model.name)
  if scheme == "none" and model.name == "transformer":
    raise ConfigError(
      "config key 'model.position' is 'none', but model "
      "'transformer' has an encoder, which without positions sees "
      "a bag of tokens; 'none' is for the decoder-only 'gpt'"
    )
  if scheme == "rope" and (model.hidden_size // model.num_heads) % 2:
    raise ConfigError(
      f"config key 'model.position' is 'rope', which rotates "
      f"pairs of features: the head dimension 'model.hidden_size' / "
      f"'model.num_heads' ({model.hidden_size // model.num_heads}) must be even"
    )
  if (
    model.name == "gpt" and data_keys.task != "text" and data_keys.task not in data.SYNTHETIC_TASKS
  ):
    raise ConfigError(
      f"config key 'data.task' has value {data_keys.task!r}; model 'gpt' "
      "trains on 'text' (a language model) or on a synthetic task "
      f"(decoder-only sequence to sequence: {data.describe_synthetic()})"
    )
  if (
    model.name == "gpt" and data_keys.task == "text" and data_keys.max_length > model.max_positions
  ):
    raise ConfigError(
      f"config key 'data.max_length' ({data_keys.max_length}) must be <= "
      f"'model.max_positions' ({model.max_positions})"
    )
  if data_keys.task not in data.SYNTHETIC_TASKS:
    return
  (src_w, tgt_w), which = max(
    (synthetic.widths(data_keys.task, data_keys.train_max_length), "train"),
    (synthetic.widths(data_keys.task, data_keys.eval_max_length), "eval"),
    key=lambda x: sum(x[0]),
  )
  # Beam search runs one decode step past the longest output (its final
  # scoring step), so the cache holds the output + 1 position beside it.
  if model.name == "gpt":
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
  if need > model.max_positions:
    raise ConfigError(
      f"config key 'model.max_positions' ({model.max_positions}) must be >= {what} = {need}"
    )


def check_per_model(config) -> None:
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
      msg = config_lib.unknown_key_message(f"{PER_MODEL}.{name}.{key}")
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
    reads = model_setup.model_keys_read(trial)
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
    ("model", model_setup.model_keys_read(config), f"model {config.model.name!r}"),
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
  train, defaults = config.train, base_config().train
  for owner_key, table in (("optimizer", step.OPTIMIZER_KEYS), ("schedule", step.SCHEDULE_KEYS)):
    owner = train[owner_key]
    for keys in table.values():
      for key in keys:
        if key not in table.get(owner, ()) and train[key] != defaults[key]:
          readers = sorted(o for o, ks in table.items() if key in ks)
          raise ConfigError(
            f"config key 'train.{key}' is {train[key]!r}, but train.{owner_key} "
            f"{owner!r} does not read it (only {', '.join(map(repr, readers))} "
            f"does): leave it at its default {defaults[key]!r}"
          )


def _check_data(config) -> None:
  data_keys = config.data
  allowed("data.tokenizer", data_keys.tokenizer, tokenizers.KINDS)
  allowed("data.overlong", data_keys.overlong, parallel_text.OVERLONG)
  allowed("data.normalize", data_keys.normalize, parallel_text.NORMALIZATIONS)
  if data_keys.task == "files":
    for key in ("train_path", "eval_path"):
      if not data_keys[key]:
        raise ConfigError(
          f"config key 'data.{key}' is empty; data.task='files' needs a TSV or a .src/.tgt pair"
        )
  if data_keys.task.startswith("tfds:"):
    for key in ("train_split", "eval_split"):
      if not data_keys[key]:
        raise ConfigError(
          f"config key 'data.{key}' is empty; data.task={data_keys.task!r} needs a TFDS split name"
        )
