"""Text from a trained character-level GPT in a workdir (``experiments.generate``).

Needs only the workdir: ``config.json``, ``vocab_tgt.txt`` and a checkpoint
(the training text itself is not read again).
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging

from attention_jax import checkpoint as checkpoint_lib
from attention_jax import config as config_lib
from attention_jax import train
from attention_jax.data import text_lm
from attention_jax.data.vocab import UNK, Vocabulary
from attention_jax.models import gpt


def load_lm(workdir: str, max_new_tokens: int = 0, prompt_length: int = 0):
  """(params, graphdef, config, vocab) of the latest checkpoint in ``workdir``.

  Before anything is restored, refuses a prompt + ``max_new_tokens`` longer
  than the position table (``model.max_positions``)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} not found: is {workdir} a workdir?")
  with open(path, encoding="utf-8") as f:
    config = config_lib.from_json(f.read())
  if config.model.name != "gpt":
    raise ValueError(f"{path}: model.name is {config.model.name!r}; generate needs "
                     "a decoder-only LM ('gpt')")
  limit = config.model.max_positions
  if prompt_length + max_new_tokens > limit:
    raise ValueError(f"prompt ({prompt_length} characters) + --max_new_tokens "
                     f"({max_new_tokens}) exceeds model.max_positions ({limit}), "
                     "the length of the model's position table")
  vocab = Vocabulary.load(os.path.join(workdir, "vocab_tgt.txt"))
  graphdef, state, _, _ = train.create_state(config, len(vocab), len(vocab))
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    state, _ = ckpt.restore(state)
  finally:
    ckpt.close()
  return state.params, graphdef, config, vocab


def generate_text(workdir: str, prompt: str, *, max_new_tokens: int = 200,
                  temperature: float = 0.8, top_k: int = 0, seed: int = 0) -> str:
  """The sampled continuation of ``prompt`` (without the prompt)."""
  if not prompt:
    raise ValueError("--prompt is empty: give at least one character")
  if max_new_tokens <= 0 or temperature < 0 or top_k < 0:
    raise ValueError("--max_new_tokens must be > 0, --temperature >= 0, --top_k >= 0")
  params, graphdef, config, vocab = load_lm(workdir, max_new_tokens, len(prompt))
  ids = text_lm.encode(vocab, prompt)
  unknown = sorted({c for c, i in zip(prompt, ids) if i == UNK})
  if unknown:
    logging.warning("prompt characters not in the vocabulary (read as <unk>): %r",
                    "".join(unknown))
  top_k = min(top_k, len(vocab))
  sampler = gpt.make_sampler(graphdef, max_new_tokens=max_new_tokens,
                             temperature=float(temperature), top_k=top_k)
  tokens = sampler(params, ids[None, :], jax.random.PRNGKey(seed))
  return text_lm.decode(vocab, np.asarray(tokens[0]))
