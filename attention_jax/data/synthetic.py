"""Synthetic sequence-to-sequence tasks, deterministic from the seed.

A batch is a pure function of ``(seed, split, index)``: the training pipeline's
position is one integer, so a resumed run sees exactly the batches an
uninterrupted run would.

Tasks map a source of content symbols ``s_1 … s_n`` (ids ≥ 4) to a target:

* ``reverse``: ``s_n … s_1`` (the classic test of the fixed-length bottleneck:
  the first source symbol is needed last);
* ``copy``: ``s_1 … s_n``.
"""

from __future__ import annotations

import numpy as np

from attention_jax.data.vocab import BOS, EOS, PAD, Vocabulary

_SPLIT_IDS = {"train": 0, "eval": 1, "test": 2}

TARGET_FNS = {
    "reverse": lambda s: s[::-1],
    "copy": lambda s: s,
}


def vocabulary(vocab_size: int) -> Vocabulary:
  return Vocabulary.from_symbols(str(i) for i in range(vocab_size))


def make_examples(task: str, rng: np.random.Generator, n: int, vocab_size: int,
                  min_length: int, max_length: int) -> list[tuple[list[int], list[int]]]:
  """``n`` (source_ids, target_ids) pairs with lengths uniform in [min, max]."""
  fn = TARGET_FNS[task]
  lengths = rng.integers(min_length, max_length + 1, size=n)
  out = []
  for L in lengths:
    src = (rng.integers(0, vocab_size, size=L) + 4).tolist()
    out.append((src, list(fn(src))))
  return out


def pad_batch(examples, src_len: int, tgt_len: int) -> dict[str, np.ndarray]:
  """Right-padded arrays.

  src:     [B, src_len]        s_1 … s_n PAD …
  tgt_in:  [B, tgt_len + 1]    BOS y_1 … y_m PAD …
  tgt_out: [B, tgt_len + 1]    y_1 … y_m EOS PAD …
  """
  B = len(examples)
  src = np.full((B, src_len), PAD, np.int32)
  tgt_in = np.full((B, tgt_len + 1), PAD, np.int32)
  tgt_out = np.full((B, tgt_len + 1), PAD, np.int32)
  for i, (s, t) in enumerate(examples):
    src[i, :len(s)] = s
    tgt_in[i, 0] = BOS
    tgt_in[i, 1:len(t) + 1] = t
    tgt_out[i, :len(t)] = t
    tgt_out[i, len(t)] = EOS
  return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


class SyntheticTask:
  """Training batches by index, and a fixed evaluation set.

  The interface every task provides to training: ``objective`` (a name in
  ``attention_jax.objectives``), ``src_vocab``/``tgt_vocab``,
  ``train_iterator()`` (with ``get_state``/``set_state``),
  ``eval_set(split) -> dict of arrays``, ``count_tokens(batch)``.
  """

  objective = "seq2seq"

  def __init__(self, config):
    d = config.data
    self.name = d.task
    self.seed = config.seed
    self.vocab_size = d.vocab_size
    self.src_vocab = self.tgt_vocab = vocabulary(d.vocab_size)
    self.train_lengths = (d.train_min_length, d.train_max_length)
    self.eval_lengths = (d.eval_min_length, d.eval_max_length)
    self.batch_size = config.train.batch_size
    self.eval_examples = d.eval_examples

  def _rng(self, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([self.seed, _SPLIT_IDS[split], index])

  def train_batch(self, index: int) -> dict[str, np.ndarray]:
    lo, hi = self.train_lengths
    ex = make_examples(self.name, self._rng("train", index), self.batch_size,
                       self.vocab_size, lo, hi)
    return pad_batch(ex, hi, hi)

  def train_iterator(self) -> "IndexedIterator":
    return IndexedIterator(self.train_batch)

  def count_tokens(self, batch) -> int:
    return int((batch["src"] != PAD).sum() + (batch["tgt_out"] != PAD).sum())

  def eval_set(self, split: str = "eval") -> dict[str, np.ndarray]:
    lo, hi = self.eval_lengths
    ex = make_examples(self.name, self._rng(split, 0), self.eval_examples,
                       self.vocab_size, lo, hi)
    return pad_batch(ex, hi, hi)


class IndexedIterator:
  """Yields ``batch_fn(0), batch_fn(1), …``; its whole state is the next index."""

  def __init__(self, batch_fn, start: int = 0):
    self.batch_fn = batch_fn
    self.index = start

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    batch = self.batch_fn(self.index)
    self.index += 1
    return batch

  def get_state(self) -> dict:
    return {"index": self.index}

  def set_state(self, state: dict) -> None:
    self.index = int(state["index"])
