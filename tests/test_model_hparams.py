"""The models' hyperparameter dataclasses: built at one boundary, the keys a
model reads derived from their fields, nothing in models/ seeing a config."""

import dataclasses
import os
import re

import pytest
from conftest import ROOT, tiny_config

from attention_jax import config as config_lib
from attention_jax import config_fields, model_setup, models


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_fields_are_model_keys_with_the_schema_defaults(name):
  """Every non-context field is a ``model.*`` key, its default the schema's
  (the two cannot drift apart)."""
  cls = models.MODELS[name].config_class
  defaults = config_lib.base_config().model
  assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
  for field in dataclasses.fields(cls):
    if field.name in config_fields.context_keys_of(cls):
      continue
    assert field.name in defaults, f"{name}: field {field.name} is no model key"
    assert field.default == defaults[field.name], (name, field.name)
    assert field.type == type(defaults[field.name]).__name__, (name, field.name)


def test_hparams_from_a_config_are_frozen_and_hashable():
  config = tiny_config(**{"model.name": "rnnsearch", "model.readout": "maxout"})
  hp = model_setup.model_hparams(config, 9, 11)
  assert (hp.src_vocab_size, hp.tgt_vocab_size, hp.readout) == (9, 11, "maxout")
  assert hp.hidden_size == config.model.hidden_size
  with pytest.raises(dataclasses.FrozenInstanceError):
    hp.hidden_size = 3
  assert hash(hp) == hash(model_setup.model_hparams(config, 9, 11))


@pytest.mark.parametrize(
  "overrides, key, read",
  [
    ({"model.name": "rnnsearch"}, "readout_dim", False),
    ({"model.name": "rnnsearch", "model.readout": "maxout"}, "readout_dim", True),
    ({"model.name": "rnnsearch"}, "reverse_source", False),
    ({"model.name": "luong"}, "attention_dim", False),
    ({"model.name": "luong", "model.attention_score": "concat"}, "attention_dim", True),
    ({"model.name": "transformer"}, "tie_embeddings", True),
    ({"model.name": "gpt"}, "tie_embeddings", False),
    ({"model.name": "gpt"}, "scan_layers", True),
    ({"model.name": "sequence_rnn", "data.task": "adding"}, "embed_dim", False),
    ({"model.name": "sequence_rnn", "data.task": "temporal_order"}, "embed_dim", True),
    ({"model.name": "sequence_rnn", "data.task": "adding"}, "gru_reset_after", True),
    (
      {"model.name": "sequence_rnn", "data.task": "adding", "model.cell": "lstm"},
      "gru_reset_after",
      False,
    ),
  ],
)
def test_keys_read_follow_the_fields_and_their_conditions(overrides, key, read):
  config = config_lib.base_config()
  for dotted, value in overrides.items():
    section, leaf = dotted.split(".")
    config[section][leaf] = value
  assert (key in model_setup.model_keys_read(config)) == read


def test_gpt_and_sequence_rnn_get_the_task_facts():
  lm = model_setup.model_hparams(tiny_config(**{"model.name": "gpt", "data.task": "text"}), 0, 20)
  s2s = model_setup.model_hparams(tiny_config(**{"model.name": "gpt"}), 9, 11)
  assert (lm.seq2seq, s2s.seq2seq) == (False, True)
  config = tiny_config(**{"model.name": "sequence_rnn", "data.task": "adding"})
  hp = model_setup.model_hparams(config, 4, 4)
  assert (hp.output_kind, hp.input_channels) == ("regression", 2)


def test_no_module_in_models_reads_a_config():
  folder = os.path.join(ROOT, "attention_jax", "models")
  for name in sorted(os.listdir(folder)):
    if name.endswith(".py"):
      with open(os.path.join(folder, name), encoding="utf-8") as f:
        text = f.read()
      assert "ml_collections" not in text, name
      assert not re.search(r"\bconfig\.(model|data|train|seed)\b", text), name
