"""Shared fixtures: tiny configs that run in seconds on a CPU."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from attention_jax.config import base_config  # noqa: E402


def tiny_config(**overrides):
  """A config that trains in a few seconds; ``overrides`` use dotted keys.

  The tiny sizes below apply where the chosen model and task read them; any
  other ``model.*``/``data.*`` key not in ``overrides`` keeps its default (so
  ``tiny_config(**{"model.name": "transformer"})`` validates)."""
  c = base_config()
  c.model.embed_dim = 16
  c.model.hidden_size = 32
  c.data.vocab_size = 6
  c.data.train_min_length = 1
  c.data.train_max_length = 5
  c.data.eval_min_length = 1
  c.data.eval_max_length = 5
  c.data.eval_examples = 64
  c.train.steps = 40
  c.train.batch_size = 16
  c.train.warmup_steps = 5
  c.train.log_every_steps = 10
  c.eval.every_steps = 20
  c.eval.batch_size = 32
  c.checkpoint.every_steps = 20
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  from attention_jax import data, models
  defaults = base_config()
  for section, reads in (("model", _keys(models.config_keys, c)),
                         ("data", _keys(data.config_keys, c))):
    if reads is None:
      continue
    for key in c[section]:
      if key not in reads and f"{section}.{key}" not in overrides:
        c[section][key] = defaults[section][key]
  return c


def _keys(fn, config):
  try:
    return fn(config)
  except Exception:  # an invalid name: validation says so
    return None


@pytest.fixture
def make_config():
  return tiny_config
