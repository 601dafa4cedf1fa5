"""A tiny config for tests, notebooks and smoke runs: trains in seconds on a CPU.

``tiny_config(**{"model.name": "luong", "train.steps": 5})`` — dotted keys
override. The tiny sizes apply where the chosen model and data task read them;
every other ``model.*``/``data.*`` key not overridden keeps its default, so the
config validates for any model (see ``attention_jax.config``: keys a model or
task ignores are refused).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from attention_jax import config as config_lib
from attention_jax import data, model_setup

TINY = {
  "model.embed_dim": 16,
  "model.hidden_size": 32,
  "data.vocab_size": 6,
  "data.train_min_length": 1,
  "data.train_max_length": 5,
  "data.eval_min_length": 1,
  "data.eval_max_length": 5,
  "data.eval_examples": 64,
  "train.steps": 40,
  "train.batch_size": 16,
  "train.warmup_steps": 5,
  "train.log_every_steps": 10,
  "eval.every_steps": 20,
  "eval.batch_size": 32,
  "checkpoint.every_steps": 20,
}


def _set(config: ml_collections.ConfigDict, key: str, value) -> None:
  node = config
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  node[leaf] = value


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """:data:`TINY` over :func:`config.base_config`, then ``overrides``."""
  config = config_lib.base_config()
  for key, value in {**TINY, **overrides}.items():
    _set(config, key, value)
  defaults = config_lib.base_config()
  for section, keys_of in (("model", model_setup.model_keys_read), ("data", data.config_keys)):
    try:
      reads = keys_of(config)
    except (KeyError, ValueError):  # an unknown model or task: validation names it
      continue
    for key in config[section]:
      if key not in reads and f"{section}.{key}" not in overrides:
        config[section][key] = defaults[section][key]
  return config


def decode_in_steps(decode, x, cache, prefill: int):
  """``x[:, :prefill]`` in one call, then one position at a time, through
  ``decode(x_part, cache) -> (out, cache, …)``: the outputs joined along time
  (what incremental decoding with a KV cache must reproduce of the full
  forward pass) and the last cache."""
  out, cache = decode(x[:, :prefill], cache)[:2]
  outs = [out]
  for t in range(prefill, x.shape[1]):
    out, cache = decode(x[:, t : t + 1], cache)[:2]
    outs.append(out)
  return jnp.concatenate(outs, 1), cache
