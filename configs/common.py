"""What the config files share, so that each one states only what differs.

A config file is ``get_config(arg=None)`` returning a ConfigDict built from
``attention_jax.config.base_config()`` (as in big_vision and the Flax
examples); this module is not a config itself. It holds:

* ``:ARG`` parsing, where a bad argument is one ValueError naming the file and
  the argument: :func:`apply_mode`/:func:`parse_mode` (``tiny``, ``full``),
  :func:`paper_arg` (``rnnsearch30,tiny``), :func:`key_values`
  (``cell=lstm,length=50``);
* the recipes several experiments train with: :func:`synthetic` (short
  ``reverse``/``copy`` sequences) and :func:`length_sweep` on it,
  :func:`sequence_rnn` (the long-range tasks), :func:`wmt14` (the paper
  configs' data);
* the smaller and larger modes: :func:`tiny_synthetic`, :func:`tiny_reverse`,
  :func:`few_steps` (a sweep's one tiny point), :func:`paper_tiny` — seconds
  on a CPU, for the tests — and :func:`full_synthetic` (GPU size).

Config files import it as ``from configs import common``: the repository
root is on ``sys.path`` when ``python -m experiments.run`` runs from it, and
installing the repository installs the ``configs`` package beside
``attention_jax``.
"""

from __future__ import annotations

import os

import ml_collections

from attention_jax import data, model_setup
from attention_jax.config import base_config

_CONFIGS_DIR = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------
# ``:ARG``


def where(file: str) -> str:
  """A config's ``__file__`` as errors name it: ``configs/papers/cho2014.py``
  (a file outside this folder keeps its own path)."""
  relative = os.path.relpath(os.path.abspath(file), _CONFIGS_DIR)
  if relative.startswith(os.pardir):
    return file
  return "/".join(("configs", *relative.split(os.sep)))


def _parts(arg: str | None) -> list[str]:
  """``" full , tiny "`` -> ``["full", "tiny"]`` (None and "" -> [])."""
  return [part.strip() for part in (arg or "").split(",") if part.strip()]


def _quoted(words) -> str:
  return ", ".join(repr(w) for w in words)


def _words(arg: str | None, file: str, allowed) -> list[str]:
  """The comma-separated words of ``arg``, each one of ``allowed``."""
  parts = _parts(arg)
  for part in parts:
    if part not in allowed:
      choices = f"allowed: {_quoted(allowed)}" if allowed else "this config takes no argument"
      raise ValueError(f"{where(file)}: unknown argument {part!r}; {choices}")
  return parts


def parse_mode(arg: str | None, file: str, *modes: str) -> str | None:
  """``:ARG`` as one of ``modes`` (``"full"``, ``"tiny"``), or None when
  empty; with no ``modes`` every ARG is refused."""
  words = _words(arg, file, modes)
  if len(words) > 1:
    raise ValueError(
      f"{where(file)}: arguments {_quoted(words)} do not combine; give one of {_quoted(modes)}"
    )
  return words[0] if words else None


def apply_mode(
  config: ml_collections.ConfigDict, arg: str | None, file: str, **modes
) -> ml_collections.ConfigDict:
  """Applies the mode that ``:ARG`` names to ``config`` and returns it.

  ``modes``: name -> function changing a config in place (``tiny=...``,
  ``full=...``); see :func:`parse_mode`.
  """
  mode = parse_mode(arg, file, *modes)
  if mode:
    modes[mode](config)
  return config


def paper_arg(arg: str | None, file: str, variants=()) -> tuple[str | None, bool]:
  """``"rnnsearch30,tiny"`` -> ``("rnnsearch30", True)``: at most one of
  ``variants`` (None when absent) and whether ``tiny`` was given."""
  words = _words(arg, file, (*variants, "tiny"))
  chosen = [w for w in words if w != "tiny"]
  if len(chosen) > 1:
    raise ValueError(
      f"{where(file)}: arguments {_quoted(chosen)} do not combine; give one of {_quoted(variants)}"
    )
  return (chosen[0] if chosen else None), "tiny" in words


def key_values(arg: str | None, file: str, defaults: dict[str, str]) -> dict[str, str]:
  """``"cell=lstm,task=adding"`` -> every key of ``defaults`` with its value
  (strings; the caller checks the values)."""
  choices = dict(defaults)
  keys = ", ".join(defaults)
  for part in _parts(arg):
    if "=" not in part:
      raise ValueError(f"{where(file)}: argument {part!r} is not key=value; keys: {keys}")
    key, value = (s.strip() for s in part.split("=", 1))
    if key not in defaults:
      raise ValueError(f"{where(file)}: unknown argument key {key!r}; keys: {keys}")
    choices[key] = value
  return choices


# --------------------------------------------------------------------------
# Recipes


def set_where_read(config: ml_collections.ConfigDict, **values) -> None:
  """Sets each ``model.<key>`` of ``values`` only where ``config.model.name``
  reads it (a key the model ignores must keep its default)."""
  reads = model_setup.model_keys_read(config)
  config.model.update({k: v for k, v in values.items() if k in reads})


def lengths(config: ml_collections.ConfigDict, max_length: int) -> None:
  """Training and evaluation sequences of 1..``max_length`` symbols."""
  data_config = config.data
  data_config.train_min_length = data_config.eval_min_length = 1
  data_config.train_max_length = data_config.eval_max_length = max_length


def synthetic(task: str, max_length: int, *, steps: int, every: int) -> ml_collections.ConfigDict:
  """The small synthetic recipe of the seq2seq configs.

  ``task`` (``reverse`` or ``copy``) on 1..``max_length`` symbols from a
  vocabulary of 10, evaluated on 1,000 held-out sequences; Adam 3e-3, batch
  64, 200 warm-up steps then cosine decay to 5% (with a constant rate Adam
  spikes once RNNsearch has converged), global-norm clipping 1.0; ``steps``
  updates, evaluated and checkpointed every ``every`` steps. The model is
  the caller's (``config.model.update(...)``).
  """
  config = base_config()
  config.data.update(task=task, vocab_size=10, eval_examples=1000)
  lengths(config, max_length)
  config.train.update(
    steps=steps,
    batch_size=64,
    learning_rate=3e-3,
    optimizer="adam",
    schedule="cosine",
    warmup_steps=200,
    end_lr_fraction=0.05,
    grad_clip_norm=1.0,
    log_every_steps=100,
  )
  config.eval.every_steps = config.checkpoint.every_steps = every
  return config


def full_synthetic(config: ml_collections.ConfigDict) -> None:
  """The sweeps' ``full`` (GPU) size of :func:`synthetic`: 20,000 steps of
  batch 128, 2,000 evaluation sequences, evaluated and checkpointed every
  2,000 steps."""
  config.data.eval_examples = 2000
  config.train.update(steps=20000, batch_size=128)
  config.eval.every_steps = config.checkpoint.every_steps = 2000


def length_sweep(task: str) -> ml_collections.ConfigDict:
  """The base of the sweeps evaluated by source length (``bottleneck.py``,
  ``reverse_source.py``): :func:`synthetic` ``task`` on 1..30 symbols, 3,000
  steps logged every 250, evaluated on 500 sequences and checkpointed every
  1,500; an ``rnn_encdec`` (embeddings 32, hidden 64) that the points change."""
  config = synthetic(task, 30, steps=3000, every=1500)
  config.model.update(name="rnn_encdec", embed_dim=32, hidden_size=64)
  config.data.eval_examples = 500
  config.train.log_every_steps = 250
  return config


def length_sweep_tiny(config: ml_collections.ConfigDict) -> None:
  """:func:`length_sweep`'s ``tiny``: :func:`few_steps` on lengths 1–4."""
  few_steps(config)
  lengths(config, 4)


# The long-range "cells" (long_range.py, vanishing.py): name ->
# (model.cell, model.pooling). ``attention`` is the Elman recurrence with an
# attention-pooling head that reads every state, not only the last.
CELLS = {
  "elman": ("elman", "last"),
  "gru": ("gru", "last"),
  "lstm": ("lstm", "last"),
  "attention": ("elman", "attention"),
}


def sequence_rnn(task: str, cell: str, length: int) -> ml_collections.ConfigDict:
  """A ``sequence_rnn`` (one of :data:`CELLS`) on a long-range task of
  ``length`` steps: hidden 128 (embeddings 16 where the task reads tokens),
  Adam 1e-3, batch 32, 100 warm-up steps then cosine decay to 5% over 3,000
  steps, global-norm clipping 1.0; evaluated on 1,000 held-out sequences in
  batches of 250. Cadence of logs, evaluation and checkpoints: the caller's.
  """
  config = base_config()
  model_cell, pooling = CELLS[cell]
  config.model.update(name="sequence_rnn", cell=model_cell, pooling=pooling, hidden_size=128)
  config.data.update(task=task, length=length, eval_examples=1000)
  set_where_read(config, embed_dim=16)  # adding reads real numbers: no embedding
  config.train.update(
    steps=3000,
    batch_size=32,
    learning_rate=1e-3,
    optimizer="adam",
    schedule="cosine",
    warmup_steps=100,
    end_lr_fraction=0.05,
    grad_clip_norm=1.0,
  )
  config.eval.batch_size = 250
  return config


def wmt14(target: str) -> ml_collections.ConfigDict:
  """The paper configs' data and cadence: WMT'14 English→``target`` (``fr``
  or ``de``) from the TFDS catalog, word tokens unless the paper says
  otherwise, over-long training pairs dropped; logs every 200 steps,
  evaluation and checkpoints every 10,000."""
  config = base_config()
  config.data.update(
    task=f"tfds:wmt14_translate/{target}-en",
    source_lang="en",
    target_lang=target,
    tokenizer="word",
    overlong="drop",
  )
  config.train.log_every_steps = 200
  config.eval.every_steps = config.checkpoint.every_steps = 10_000
  return config


# --------------------------------------------------------------------------
# Tiny modes: seconds on a CPU, for the tests


def tiny_reverse(config: ml_collections.ConfigDict, eval_examples: int) -> None:
  """Synthetic ``reverse`` over a vocabulary of 6, lengths 1–5, evaluated on
  ``eval_examples`` sequences in one batch."""
  config.data.update(task="reverse", vocab_size=6, eval_examples=eval_examples)
  lengths(config, 5)
  config.eval.batch_size = eval_examples


def tiny_synthetic(config: ml_collections.ConfigDict) -> None:
  """The recurrent seq2seq configs' ``tiny``: ``reverse`` of 1–5 symbols of
  6, hidden 32, embeddings 16, one layer, the source read forwards; 400
  steps of Adam 1e-2 — learnt in seconds on a CPU (the tests check it)."""
  tiny_reverse(config, eval_examples=200)
  config.model.update(embed_dim=16, hidden_size=32, num_layers=1, reverse_source=False)
  config.train.update(
    steps=400, batch_size=32, learning_rate=1e-2, warmup_steps=20, log_every_steps=100
  )
  config.eval.every_steps = config.checkpoint.every_steps = 400


def few_steps(config: ml_collections.ConfigDict) -> None:
  """A sweep's ``tiny`` point: hidden 16 (embeddings 8 where the model has
  them), 4 steps of batch 8, one evaluation of 32 sequences."""
  set_where_read(config, embed_dim=8, hidden_size=16)
  config.data.eval_examples = config.eval.batch_size = 32
  config.train.update(steps=4, batch_size=8, warmup_steps=1, log_every_steps=2)
  config.eval.every_steps = config.checkpoint.every_steps = 4


def paper_tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A paper config's ``tiny``: synthetic ``reverse`` (no network), the same
  model family, cell, readout and optimizer at tiny sizes, 3 steps.

  Model sizes shrink only where the model reads the key, and every data key
  that ``reverse`` does not read goes back to its default (the paper's
  dataset keys would otherwise be refused as ignored)."""
  defaults = base_config().data
  config.data.task = "reverse"
  reads = data.config_keys(config)
  config.data.update({k: defaults[k] for k in config.data if k not in reads})
  tiny_reverse(config, eval_examples=16)
  model_config = config.model
  set_where_read(
    config,
    embed_dim=8,
    hidden_size=16,
    num_layers=min(model_config.num_layers, 2),
    readout_dim=min(model_config.readout_dim, 8),
    attention_dim=min(model_config.attention_dim, 8),
    mlp_dim=min(model_config.mlp_dim, 32),
    num_heads=min(model_config.num_heads, 2),
  )
  config.train.update(
    steps=3, batch_size=8, log_every_steps=3, warmup_steps=min(config.train.warmup_steps, 1)
  )
  config.eval.every_steps = config.checkpoint.every_steps = 3
  config.eval.beam_size = 1  # beam search compiles slowly; tests stay fast
  return config
