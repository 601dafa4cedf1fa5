"""Text from a trained character-level GPT in a workdir (``experiments.generate``).

Needs only the workdir: ``config.json``, ``vocab_tgt.txt`` and a checkpoint
(the training text itself is not read again). Sampling runs through the KV
cache inside one compiled ``lax.scan`` (``decoding.sample_lm``).
"""

from __future__ import annotations

import jax
import numpy as np
from absl import logging
from flax import nnx

from attention_jax import decoding
from attention_jax import workdir as workdir_lib
from attention_jax.data import text as text_task
from attention_jax.data.vocab import UNK


def make_sampler(graphdef, *, max_new_tokens: int, temperature: float, top_k: int):
  """A jitted ``(params, prompt [B, P], rng) -> tokens [B, N]``."""

  @jax.jit
  def run(params, prompt, rng):
    return decoding.sample_lm(
      nnx.merge(graphdef, params),
      prompt,
      rng,
      max_new_tokens=max_new_tokens,
      temperature=temperature,
      top_k=top_k,
    )

  return run


def generate_text(
  workdir: str,
  prompt: str,
  *,
  max_new_tokens: int = 200,
  temperature: float = 0.8,
  top_k: int = 0,
  seed: int = 0,
) -> str:
  """The sampled continuation of ``prompt`` (without the prompt).

  Before anything is restored, refuses a non-GPT workdir and a prompt +
  ``max_new_tokens`` longer than the position table (``model.max_positions``).
  """
  if not prompt:
    raise ValueError("--prompt is empty: give at least one character")
  if max_new_tokens <= 0 or temperature < 0 or top_k < 0:
    raise ValueError("--max_new_tokens must be > 0, --temperature >= 0, --top_k >= 0")
  config = workdir_lib.read_config(workdir)
  if config.model.name != "gpt":
    raise ValueError(
      f"{workdir_lib.config_path(workdir)}: model.name is "
      f"{config.model.name!r}; generate needs a decoder-only LM ('gpt')"
    )
  limit = config.model.max_positions
  if len(prompt) + max_new_tokens > limit:
    raise ValueError(
      f"prompt ({len(prompt)} characters) + --max_new_tokens "
      f"({max_new_tokens}) exceeds model.max_positions ({limit}), "
      "the length of the model's position table"
    )
  run = workdir_lib.load(workdir)
  vocab = run.task.tgt_vocab
  ids = text_task.encode(vocab, prompt)
  unknown = sorted({c for c, i in zip(prompt, ids, strict=True) if i == UNK})
  if unknown:
    logging.warning("prompt characters not in the vocabulary (read as <unk>): %r", "".join(unknown))
  sampler = make_sampler(
    run.graphdef,
    max_new_tokens=max_new_tokens,
    temperature=float(temperature),
    top_k=min(top_k, len(vocab)),
  )
  tokens = sampler(run.state.params, ids[None, :], jax.random.PRNGKey(seed))
  return text_task.decode(vocab, np.asarray(tokens[0]))
