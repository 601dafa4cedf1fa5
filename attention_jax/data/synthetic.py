"""Synthetic sequence-to-sequence tasks, deterministic from the seed.

A batch is a pure function of ``(seed, split, index)``: the training pipeline's
position is one integer, so a resumed run sees exactly the batches an
uninterrupted run would. Training and evaluation lengths are set separately
(``data.train_{min,max}_length``, ``data.eval_{min,max}_length``), so a
length-extrapolation split is one flag.

Symbol tasks map a source of content symbols ``s_1 … s_n`` (``data.vocab_size``
of them, ids ≥ 4) to a target:

* ``reverse``: ``s_n … s_1`` (the classic test of the fixed-length bottleneck:
  the first source symbol is needed last);
* ``copy``: ``s_1 … s_n``;
* ``sort``: the symbols in ascending order (Vinyals et al. 2015, "Order
  matters"; needs the whole input before the first output).

Other tasks:

* ``addition``: character-level sums, ``"123+45" → "168"``; each operand has
  ``min_length..max_length`` digits (no leading zeros); the vocabulary is
  ``0-9`` and ``+`` (``data.vocab_size`` is not used);
* ``reorder``: an English-like grammar translated into German-like word order
  (:mod:`attention_jax.data.reorder`); lengths count source words.
"""

from __future__ import annotations

import concurrent.futures

import numpy as np

from attention_jax.data.vocab import BOS, EOS, PAD, Vocabulary

_SPLIT_IDS = {"train": 0, "eval": 1, "test": 2}

TARGET_FNS = {
    "reverse": lambda s: s[::-1],
    "copy": lambda s: s,
    "sort": sorted,
}
TASKS = (*TARGET_FNS, "addition", "reorder")


def vocabulary(vocab_size: int) -> Vocabulary:
  return Vocabulary.from_symbols(str(i) for i in range(vocab_size))


ADDITION_VOCAB = Vocabulary.from_symbols([*"0123456789", "+"])


def make_examples(task: str, rng: np.random.Generator, n: int, vocab_size: int,
                  min_length: int, max_length: int) -> list[tuple[list[int], list[int]]]:
  """``n`` (source_ids, target_ids) pairs of a symbol task, lengths uniform in [min, max]."""
  fn = TARGET_FNS[task]
  lengths = rng.integers(min_length, max_length + 1, size=n)
  out = []
  for L in lengths:
    src = (rng.integers(0, vocab_size, size=L) + 4).tolist()
    out.append((src, list(fn(src))))
  return out


def addition_examples(rng: np.random.Generator, n: int, min_digits: int,
                      max_digits: int) -> list[tuple[list[int], list[int]]]:
  """``n`` pairs "a+b" → "a+b evaluated", operands of min..max digits."""
  out = []
  for _ in range(n):
    a, b = (_number(rng, int(rng.integers(min_digits, max_digits + 1)))
            for _ in range(2))
    out.append((ADDITION_VOCAB.encode(f"{a}+{b}"), ADDITION_VOCAB.encode(str(a + b))))
  return out


def _number(rng: np.random.Generator, digits: int) -> int:
  if digits == 1:
    return int(rng.integers(0, 10))
  return int(rng.integers(10 ** (digits - 1), 10 ** digits))


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
  """Training batches by index, and fixed evaluation sets.

  The interface every task provides to training: ``objective`` (a name in
  ``attention_jax.objectives``), ``src_vocab``/``tgt_vocab``,
  ``train_iterator()`` (with ``get_state``/``set_state``),
  ``eval_set(split) -> dict of arrays``, ``count_tokens(batch)``; and for
  evaluation by text: ``detokenize(ids, side)``, ``eval_references(split)``,
  ``eval_source_lengths(split)``.
  """

  objective = "seq2seq"

  @staticmethod
  def config_keys(config) -> tuple[str, ...]:
    """The ``data.*`` keys read (``addition`` has its own digit vocabulary:
    no ``vocab_size``; the ``reorder_*`` knobs only for ``reorder``)."""
    task = config.data.task
    vocab = () if task == "addition" else ("vocab_size",)
    grammar = ("reorder_depth", "reorder_clauses") if task == "reorder" else ()
    return ("train_min_length", "train_max_length", "eval_min_length",
            "eval_max_length", "eval_examples", *vocab, *grammar)

  def __init__(self, config):
    d = config.data
    self.name = d.task
    self.seed = config.seed
    self.vocab_size = d.vocab_size
    self.train_lengths = (d.train_min_length, d.train_max_length)
    self.eval_lengths = (d.eval_min_length, d.eval_max_length)
    self.batch_size = config.train.batch_size
    self.eval_examples = d.eval_examples
    self._sep = " "
    if self.name == "addition":
      self.src_vocab = self.tgt_vocab = ADDITION_VOCAB
      self._sep = ""
    elif self.name == "reorder":
      from attention_jax.data import reorder as reorder_lib
      self._reorder = reorder_lib
      self.depth, self.clauses = d.reorder_depth, d.reorder_clauses
      self.lexicon = reorder_lib.Lexicon.build(d.vocab_size)
      self.src_vocab = Vocabulary.from_symbols(self.lexicon.source_tokens())
      self.tgt_vocab = Vocabulary.from_symbols(self.lexicon.target_tokens())
      # Fail now, not at the first batch, if the lengths cannot be generated.
      for lo, hi in (self.train_lengths, self.eval_lengths):
        reorder_lib.generate(np.random.default_rng(0), self.lexicon, self.depth,
                             self.clauses, lo, hi)
    else:
      self.src_vocab = self.tgt_vocab = vocabulary(d.vocab_size)
    self._eval_cache: dict[str, dict] = {}

  def _rng(self, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([self.seed, _SPLIT_IDS[split], index])

  def _widths(self, hi: int) -> tuple[int, int]:
    if self.name == "addition":
      return 2 * hi + 1, hi + 1
    return hi, hi   # reorder: generate() keeps targets within hi too

  def examples(self, rng: np.random.Generator, n: int, lo: int, hi: int):
    """``n`` (source_ids, target_ids) pairs with lengths in ``lo..hi``."""
    if self.name == "addition":
      return addition_examples(rng, n, lo, hi)
    if self.name == "reorder":
      out = []
      for _ in range(n):
        p = self._reorder.generate(rng, self.lexicon, self.depth, self.clauses, lo, hi)
        out.append((self.src_vocab.encode(p.source), self.tgt_vocab.encode(p.target)))
      return out
    return make_examples(self.name, rng, n, self.vocab_size, lo, hi)

  def train_batch(self, index: int) -> dict[str, np.ndarray]:
    lo, hi = self.train_lengths
    ex = self.examples(self._rng("train", index), self.batch_size, lo, hi)
    return pad_batch(ex, *self._widths(hi))

  def train_iterator(self) -> "IndexedIterator":
    return IndexedIterator(self.train_batch)

  def count_tokens(self, batch) -> int:
    return int((batch["src"] != PAD).sum() + (batch["tgt_out"] != PAD).sum())

  def eval_set(self, split: str = "eval") -> dict[str, np.ndarray]:
    if split not in self._eval_cache:
      lo, hi = self.eval_lengths
      ex = self.examples(self._rng(split, 0), self.eval_examples, lo, hi)
      self._eval_cache[split] = pad_batch(ex, *self._widths(hi))
    return self._eval_cache[split]

  def detokenize(self, ids, side: str = "tgt") -> str:
    """Ids (stopping at EOS, skipping PAD/BOS) -> text."""
    vocab = self.src_vocab if side == "src" else self.tgt_vocab
    return self._sep.join(vocab.decode(ids))

  def eval_references(self, split: str = "eval") -> list[str]:
    return [self.detokenize(row) for row in self.eval_set(split)["tgt_out"]]

  def eval_sources(self, split: str = "eval") -> list[str]:
    return [self.detokenize(row, "src") for row in self.eval_set(split)["src"]]

  def eval_source_lengths(self, split: str = "eval") -> np.ndarray:
    return (self.eval_set(split)["src"] != PAD).sum(1)


class IndexedIterator:
  """Yields ``batch_fn(0), batch_fn(1), …``; its whole state is the next index.

  With ``prefetch > 0``, the next batches are built on a background thread
  while the accelerator runs the step (they are pure functions of the index,
  so prefetching changes nothing but time).
  """

  def __init__(self, batch_fn, start: int = 0, prefetch: int = 2):
    self.batch_fn = batch_fn
    self.index = start
    self.prefetch = prefetch
    self._pool = None
    self._pending: dict[int, concurrent.futures.Future] = {}

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    i = self.index
    if self.prefetch <= 0:
      batch = self.batch_fn(i)
    else:
      if self._pool is None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="data")
      for j in range(i, i + self.prefetch + 1):
        if j not in self._pending:
          self._pending[j] = self._pool.submit(self.batch_fn, j)
      batch = self._pending.pop(i).result()
    self.index += 1
    return batch

  def get_state(self) -> dict:
    return {"index": self.index}

  def set_state(self, state: dict) -> None:
    self.index = int(state["index"])
    for f in self._pending.values():
      f.cancel()
    self._pending.clear()

  def close(self) -> None:
    if self._pool is not None:
      self._pool.shutdown(wait=False, cancel_futures=True)
      self._pool = None
