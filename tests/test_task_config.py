"""The data tasks' settings dataclasses: built at one boundary, the ``data.*``
keys a task reads derived from their fields, no task module seeing a config."""

import ast
import dataclasses
import os

import pytest
from conftest import ROOT, tiny_config

from attention_jax import config as config_lib
from attention_jax import config_fields, validation
from attention_jax import data as data_lib
from attention_jax.errors import ConfigError

TASK_CLASSES = sorted(set(data_lib.TASKS.values()), key=lambda cls: cls.__name__)

_LENGTHS = ("train_min_length", "train_max_length", "eval_min_length", "eval_max_length")
_TEXT = ("max_length", "overlong", "bucket_boundaries", "tokenizer", "normalize", "tfds_data_dir")
_FILES = ("train_path", "eval_path", "test_path")
_COUNTS = ("min_count", "max_vocab")
# A config of each task that validates (its required keys set), and the keys
# it reads (besides data.task).
TASK_CONFIGS = {
  "reverse": ({}, (*_LENGTHS, "eval_examples", "vocab_size")),
  "addition": ({"data.task": "addition"}, (*_LENGTHS, "eval_examples")),
  "reorder": (
    {"data.task": "reorder"},
    (*_LENGTHS, "eval_examples", "vocab_size", "reorder_depth", "reorder_clauses"),
  ),
  "adding": ({"data.task": "adding", "model.name": "sequence_rnn"}, ("length", "eval_examples")),
  "text": (
    {"data.task": "text", "model.name": "gpt", "data.train_path": "README.md"},
    ("train_path", "eval_path", "max_length", "eval_examples"),
  ),
  "files": (
    {"data.task": "files", "data.train_path": "a.tsv", "data.eval_path": "b.tsv"},
    (*_FILES, *_TEXT, *_COUNTS, "source_lang", "target_lang"),
  ),
  "files sentencepiece": (
    {
      "data.task": "files",
      "data.train_path": "a.tsv",
      "data.eval_path": "b.tsv",
      "data.tokenizer": "sentencepiece",
    },
    (*_FILES, *_TEXT, "sp_vocab_size"),
  ),
  "tfds char": (
    {"data.task": "tfds:wmt14_translate/de-en", "data.tokenizer": "char"},
    ("train_split", "eval_split", "test_split", "source_lang", "target_lang", *_TEXT, *_COUNTS),
  ),
}
# A valid value away from the default, for the keys whose values are checked.
OTHER = {"tokenizer": "char", "overlong": "drop", "normalize": "NFC", "bucket_boundaries": "8"}


@pytest.mark.parametrize("cls", TASK_CLASSES, ids=lambda cls: cls.__name__)
def test_fields_are_data_keys_with_the_schema_defaults(cls):
  """Every non-context field of a task's ``config_class`` is a ``data.*`` key,
  its default the schema's (the two cannot drift apart)."""
  settings = cls.config_class
  defaults = config_lib.base_config().data
  assert dataclasses.is_dataclass(settings) and settings.__dataclass_params__.frozen
  assert set(config_fields.context_keys_of(settings)) == {"seed", "batch_size"}
  for field in dataclasses.fields(settings):
    if field.name in config_fields.context_keys_of(settings):
      continue
    assert field.name in defaults, f"{cls.__name__}: field {field.name} is no data key"
    assert field.type == type(defaults[field.name]).__name__, field.name
    if field.default is not dataclasses.MISSING:  # task: no default, always given
      assert field.default == defaults[field.name], field.name


@pytest.mark.parametrize("name", sorted(TASK_CONFIGS))
def test_a_key_outside_the_tasks_dataclass_is_refused(name):
  """The task reads exactly its keys; each other ``data.*`` key, set away
  from its default, is refused naming it."""
  overrides, want = TASK_CONFIGS[name]
  config = tiny_config(**overrides)
  validation.validate(config)
  reads = config_fields.keys_read(data_lib.task_config(config))
  assert reads == data_lib.config_keys(config)
  assert sorted(reads) == sorted(("task", *want))
  defaults = config_lib.base_config().data
  unread = [key for key in defaults if key not in reads]
  assert unread
  for key in unread:
    trial = config.copy_and_resolve_references()
    default = defaults[key]
    value = OTHER.get(key, default + 1 if isinstance(default, int) else "x")
    trial.data[key] = value
    with pytest.raises(ConfigError) as e:
      validation.validate(trial)
    assert str(e.value) == (
      f"config key 'data.{key}' is {value!r}, but data.task {config.data.task!r} "
      f"does not read it: leave it at its default {default!r}"
    )


@pytest.mark.parametrize(
  "overrides, key, read",
  [
    ({"data.task": "reverse"}, "vocab_size", True),
    ({"data.task": "addition"}, "vocab_size", False),
    ({"data.task": "reorder"}, "reorder_depth", True),
    ({"data.task": "sort"}, "reorder_depth", False),
    ({"data.task": "files"}, "source_lang", True),
    ({"data.task": "files", "data.tokenizer": "char"}, "source_lang", False),
    ({"data.task": "tfds:x", "data.tokenizer": "char"}, "source_lang", True),
    ({"data.task": "files", "data.tokenizer": "sentencepiece"}, "min_count", False),
    ({"data.task": "files", "data.tokenizer": "sentencepiece"}, "sp_vocab_size", True),
    ({"data.task": "files"}, "train_split", False),
    ({"data.task": "tfds:x"}, "train_path", False),
  ],
)
def test_keys_read_follow_the_fields_and_their_conditions(overrides, key, read):
  config = config_lib.base_config()
  for dotted, value in overrides.items():
    config.data[dotted.split(".")[1]] = value
  assert (key in data_lib.config_keys(config)) == read


def test_the_settings_carry_the_config_and_its_context():
  config = tiny_config(**{"data.task": "sort", "seed": 7, "train.batch_size": 3})
  settings = data_lib.task_config(config)
  assert (settings.task, settings.seed, settings.batch_size) == ("sort", 7, 3)
  assert settings.train_max_length == config.data.train_max_length
  with pytest.raises(dataclasses.FrozenInstanceError):
    settings.vocab_size = 3
  assert data_lib.make_task(config).train_batch(0)["src"].shape[0] == 3


def test_no_task_module_reads_a_config():
  for name in ("synthetic", "long_range", "text", "parallel_text"):
    with open(os.path.join(ROOT, "attention_jax", "data", f"{name}.py"), encoding="utf-8") as f:
      tree = ast.parse(f.read())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    assert "config" not in names and "ml_collections" not in names, name
