"""Synthetic sequence-to-sequence tasks, deterministic from the seed: docs/data.md.

``copy``, ``reverse``, ``sort`` (symbols), ``addition`` (character-level sums) and
``reorder`` (English-like to German-like word order). A training batch is a pure function
of ``(seed, index)``; a hash of the source keeps eval and test sources out of training
(docs/evaluation.md#held-out-means-held-out), and every task but ``addition`` knows its
gold alignment (docs/instruments.md#attention-against-gold-alignments).
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
from absl import logging

from attention_jax.config_fields import context, read_when
from attention_jax.data import heldout
from attention_jax.data import reorder as reorder_lib
from attention_jax.data.batching import IndexedIterator, pad_batch
from attention_jax.data.vocab import PAD, Vocabulary
from attention_jax.errors import ConfigError

_SPLIT_IDS = {"train": 0, "eval": 1, "test": 2}
_HELD_OUT_STREAM = 7_777_777  # first word of the eval/test sets' RNG (no seed)

TARGET_FNS = {
  "reverse": lambda s: s[::-1],
  "copy": lambda s: s,
  "sort": sorted,
}
TASKS = (*TARGET_FNS, "addition", "reorder")


def vocabulary(vocab_size: int) -> Vocabulary:
  return Vocabulary.from_symbols(str(i) for i in range(vocab_size))


ADDITION_VOCAB = Vocabulary.from_symbols([*"0123456789", "+"])


# --------------------------------------------------------------------------
# Strata of the source space (heldout.Strata): what is drawn, how many exist.


def symbol_strata(vocab_size: int, lo: int, hi: int) -> heldout.Strata:
  """Symbol tasks: one stratum per length L; V^L sources (ids 4..V+3)."""
  V = vocab_size

  def draw(rng, L, m):
    return rng.integers(0, V, size=(m, L)) + 4

  def enumerate_(L):
    codes = np.arange(V**L)
    return (codes[:, None] // V ** np.arange(L - 1, -1, -1)) % V + 4

  return heldout.Strata(range(lo, hi + 1), draw, lambda L: V**L, enumerate_)


def _numbers(digits: int) -> int:
  """How many numbers have ``digits`` digits (no leading zeros; 0 has one)."""
  return 10 if digits == 1 else 9 * 10 ** (digits - 1)


def _digit_ids(x: np.ndarray, digits: int) -> np.ndarray:
  """[m] numbers of ``digits`` digits -> [m, digits] ids of "0".."9"."""
  return (x[:, None] // 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)) % 10 + 4


_PLUS = ADDITION_VOCAB.encode(["+"])[0]


def addition_strata(lo: int, hi: int) -> heldout.Strata:
  """``addition``: one stratum per pair of operand digit counts (da, db);
  sources ``a+b`` as ids, ``da + db + 1`` characters."""

  def first(digits):
    return 0 if digits == 1 else 10 ** (digits - 1)

  def ids(a, b, da, db):
    plus = np.full((len(a), 1), _PLUS)
    return np.concatenate([_digit_ids(a, da), plus, _digit_ids(b, db)], axis=1)

  def draw(rng, stratum, m):
    da, db = stratum
    a = rng.integers(first(da), 10**da, size=m, dtype=np.int64)
    b = rng.integers(first(db), 10**db, size=m, dtype=np.int64)
    return ids(a, b, da, db)

  def enumerate_(stratum):
    da, db = stratum
    a, b = np.meshgrid(
      np.arange(first(da), 10**da, dtype=np.int64),
      np.arange(first(db), 10**db, dtype=np.int64),
      indexing="ij",
    )
    return ids(a.ravel(), b.ravel(), da, db)

  strata = [(da, db) for da in range(lo, hi + 1) for db in range(lo, hi + 1)]
  return heldout.Strata(strata, draw, lambda s: _numbers(s[0]) * _numbers(s[1]), enumerate_)


ALIGNED_TASKS = ("copy", "reverse", "sort", "reorder")  # tasks with a gold alignment
NO_GOLD = -1


def gold_alignment(task: str, src: list[int]) -> list[int] | None:
  """For each target position, the source position its token comes from, or
  −1 where there is no unique one; None for a task without alignments
  (``addition``) or computed elsewhere (``reorder``: the grammar's, see
  :func:`attention_jax.data.reorder.generate`).

  ``copy``: t -> t; ``reverse``: t -> n−1−t; ``sort``: t -> the position of
  the t-th smallest symbol, −1 when that symbol occurs more than once.
  """
  n = len(src)
  if task == "copy":
    return list(range(n))
  if task == "reverse":
    return list(range(n - 1, -1, -1))
  if task == "sort":
    counts: dict[int, int] = {}
    for x in src:
      counts[x] = counts.get(x, 0) + 1
    order = sorted(range(n), key=lambda j: src[j])  # stable: ties keep order
    return [j if counts[src[j]] == 1 else NO_GOLD for j in order]
  return None


def alignment_rows(alignments, width: int) -> np.ndarray:
  """[B, width] int32: row i holds ``alignments[i]`` then −1 (EOS, padding)."""
  out = np.full((len(alignments), width), NO_GOLD, np.int32)
  for i, a in enumerate(alignments):
    out[i, : len(a)] = a
  return out


def addition_target(src: list[int]) -> list[int]:
  a, b = "".join(ADDITION_VOCAB.decode(src)).split("+")
  return ADDITION_VOCAB.encode(str(int(a) + int(b)))


def widths(task: str, hi: int) -> tuple[int, int]:
  """(source, target) widths of ``task``'s batches for lengths up to ``hi``
  (target without EOS; ``addition``: two operands and ``+``, and the sum)."""
  if task == "addition":
    return 2 * hi + 1, hi + 1
  return hi, hi  # reorder: generate() keeps targets within hi too


def _is_reorder(settings) -> bool:
  return settings.task == "reorder"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
  """The ``data.*`` keys a synthetic task reads."""

  task: str  # reverse | copy | sort | addition | reorder
  seed: int = context()  # the run's seed: training batch i is drawn from (seed, i)
  batch_size: int = context()  # train.batch_size
  train_min_length: int = 1  # training sources' lengths (addition: digits per operand)
  train_max_length: int = 10
  eval_min_length: int = 1  # eval and test sources' lengths
  eval_max_length: int = 10
  eval_examples: int = 1000  # size of the eval and of the test set
  # Content symbols; addition has its own digit vocabulary.
  vocab_size: int = read_when(lambda settings: settings.task != "addition", 10)
  reorder_depth: int = read_when(_is_reorder, 1)  # nesting depth of relative clauses
  reorder_clauses: int = read_when(_is_reorder, 1)  # most top-level clauses (and/because)


class SyntheticTask:
  """Training batches by index, and fixed evaluation sets (the task protocol
  of :mod:`attention_jax.data.batching`)."""

  objective = "seq2seq"
  config_class = SyntheticConfig

  def __init__(self, settings: SyntheticConfig, workdir: str | None = None):
    del workdir  # nothing is saved: the vocabulary follows from the settings
    self.name = settings.task
    self.seed = settings.seed
    self.vocab_size = settings.vocab_size
    self.train_lengths = (settings.train_min_length, settings.train_max_length)
    self.eval_lengths = (settings.eval_min_length, settings.eval_max_length)
    self.batch_size = settings.batch_size
    self.eval_examples = settings.eval_examples
    self.separator = " "  # between symbols in text ("" = characters)
    self.length_unit = "symbols"  # of eval_source_lengths
    self._strata: dict[str, heldout.Strata] = {}
    if self.name == "addition":
      self.src_vocab = self.tgt_vocab = ADDITION_VOCAB
      self.separator, self.length_unit = "", "characters"
    elif self.name == "reorder":
      self._reorder = reorder_lib
      self.length_unit = "words"
      self.depth, self.clauses = settings.reorder_depth, settings.reorder_clauses
      self.lexicon = reorder_lib.Lexicon.make(settings.vocab_size)
      self.src_vocab = Vocabulary.from_symbols(self.lexicon.source_tokens())
      self.tgt_vocab = Vocabulary.from_symbols(self.lexicon.target_tokens())
      # Fail now, not at the first batch, if the lengths cannot be generated.
      for lo, hi in (self.train_lengths, self.eval_lengths):
        reorder_lib.generate(
          np.random.default_rng(0), self.lexicon, self.depth, self.clauses, lo, hi
        )
    else:
      self.src_vocab = self.tgt_vocab = vocabulary(settings.vocab_size)
    if self.name != "reorder":
      lengths = {"train": self.train_lengths, "eval": self.eval_lengths, "test": self.eval_lengths}
      make = (
        (lambda lo, hi: addition_strata(lo, hi))
        if self.name == "addition"
        else (lambda lo, hi: symbol_strata(self.vocab_size, lo, hi))
      )
      built: dict[tuple[int, int], heldout.Strata] = {}
      for split, span in lengths.items():
        if span not in built:
          built[span] = make(*span)
        self._strata[split] = built[span]
      for split in ("train", "eval"):  # what training needs; test: eval_set
        self._require(split)
    self._eval_cache: dict[str, dict] = {}

  def _require(self, split: str) -> None:
    """ConfigError unless ``split`` has a source in its length range."""
    if self.name == "reorder" or self._strata[split].available(split):
      return
    which = "train" if split == "train" else "eval"
    lo, hi = self.train_lengths if split == "train" else self.eval_lengths
    raise ConfigError(
      f"config keys 'data.{which}_min_length'..'data.{which}_max_length' "
      f"({lo}..{hi}) with data.vocab_size={self.vocab_size}: no source of "
      f"these lengths belongs to the {split} split (held-out splits are "
      "disjoint); widen the range"
    )

  def _rng(self, split: str, index: int) -> np.random.Generator:
    if split == "train":
      return np.random.default_rng([self.seed, _SPLIT_IDS[split], index])
    return np.random.default_rng([_HELD_OUT_STREAM, _SPLIT_IDS[split], index])

  def _widths(self, hi: int) -> tuple[int, int]:
    return widths(self.name, hi)

  def examples(
    self, split: str, rng: np.random.Generator, n: int
  ) -> list[tuple[list[int], list[int]]]:
    """``n`` (source_ids, target_ids) pairs of ``split``'s sources, lengths
    in the split's range (``train_*`` or ``eval_*`` lengths)."""
    if self.name == "reorder":
      return [(s, t) for s, t, _ in self._reorder_examples(split, rng, n)]
    out = []
    for _, row in self._strata[split].sample(rng, split, n):
      src = row.tolist()
      tgt = addition_target(src) if self.name == "addition" else list(TARGET_FNS[self.name](src))
      out.append((src, tgt))
    return out

  def aligned_examples(
    self, split: str, rng: np.random.Generator, n: int
  ) -> list[tuple[list[int], list[int], list[int] | None]]:
    """:meth:`examples` (the same draws) with each pair's gold alignment: per
    target position the source position, −1 for none; None for ``addition``."""
    if self.name == "reorder":
      return self._reorder_examples(split, rng, n)
    return [(s, t, gold_alignment(self.name, s)) for s, t in self.examples(split, rng, n)]

  def _reorder_examples(self, split: str, rng: np.random.Generator, n: int):
    """Grammar sentences of the split's lengths, rejection-sampled in blocks
    until ``n`` belong to ``split``; with their content-word alignments."""
    lo, hi = self.train_lengths if split == "train" else self.eval_lengths
    rnd = random.Random(int(rng.integers(2**63)))
    want, out = _SPLIT_IDS[split], []
    while len(out) < n:
      m = int((n - len(out)) / heldout.FRACTIONS[split] * 1.25) + 8
      pairs = [
        self._reorder.fitting_pair(rnd, self.lexicon, self.depth, self.clauses, lo, hi)
        for _ in range(m)
      ]
      src = [self.src_vocab.encode(p.source) for p in pairs]
      padded = np.full((len(src), hi), PAD, np.int32)
      for i, row in enumerate(src):
        padded[i, : len(row)] = row
      which = heldout.split_of(padded)
      out += [
        (s, self.tgt_vocab.encode(p.target), reorder_lib.target_alignment(p))
        for s, p, k in zip(src, pairs, which, strict=True)
        if k == want
      ]
    return out[:n]

  def held_out(self) -> dict:
    """How the splits are kept apart, and (for small spaces) how many distinct
    sources each split has by length (for ``addition``: by digit counts)."""
    out = {"rule": heldout.RULE, "length_unit": self.length_unit}
    if self.name == "reorder":
      out["small_spaces"], out["never_drawn"] = [], {s: [] for s in heldout.SPLITS}
      return out
    label = (lambda s: f"{s[0]}+{s[1]} digits") if self.name == "addition" else str
    rows, missing = {}, {}
    for split in heldout.SPLITS:
      r, m = heldout.describe_strata(self._strata[split], label)
      rows.update({x["stratum"]: x for x in r})
      missing[split] = m[split]
    out["small_spaces"] = list(rows.values())
    out["never_drawn"] = missing
    return out

  def held_out_line(self) -> str:
    h = self.held_out()
    unit = "operand digits" if self.name == "addition" else "length"
    return heldout.summary_line(self.name, h["small_spaces"], h["never_drawn"], unit)

  def train_batch(self, index: int) -> dict[str, np.ndarray]:
    ex = self.examples("train", self._rng("train", index), self.batch_size)
    return pad_batch(ex, *self._widths(self.train_lengths[1]))

  def train_iterator(self) -> IndexedIterator:
    logging.info("%s", self.held_out_line())
    return IndexedIterator(self.train_batch)

  def count_tokens(self, batch) -> int:
    return int((batch["src"] != PAD).sum() + (batch["tgt_out"] != PAD).sum())

  def eval_set(self, split: str = "eval") -> dict[str, np.ndarray]:
    """``eval_examples`` pairs of the split (``eval`` or ``test``); ``row`` is
    each example's index, mapping per-example results back to its text;
    ``align`` [N, T+1] (tasks with a gold alignment) the source position of
    each ``tgt_out`` token, −1 for none (EOS, padding, no unique source)."""
    if split not in ("eval", "test"):
      raise ValueError(f"no evaluation split {split!r}; allowed: 'eval', 'test'")
    if split not in self._eval_cache:
      self._require(split)
      ex = self.aligned_examples(split, self._rng(split, 0), self.eval_examples)
      batch = pad_batch([(s, t) for s, t, _ in ex], *self._widths(self.eval_lengths[1]))
      batch["row"] = np.arange(len(ex), dtype=np.int32)
      if self.name in ALIGNED_TASKS:
        batch["align"] = alignment_rows([a for _, _, a in ex], batch["tgt_out"].shape[1])
      self._eval_cache[split] = batch
    return self._eval_cache[split]

  def gold_alignment(self, src: list[int]) -> list[int] | None:
    """The gold alignment of a source typed in (``translate --plot``): known
    for ``copy``, ``reverse`` and ``sort``; None for ``reorder`` (its
    alignment comes from the grammar's tree, which a typed sentence does not
    carry) and ``addition``."""
    return gold_alignment(self.name, src)

  def detokenize(self, ids, side: str = "tgt") -> str:
    """Ids (stopping at EOS, skipping PAD/BOS) -> text."""
    vocab = self.src_vocab if side == "src" else self.tgt_vocab
    return self.separator.join(vocab.decode(ids))

  def eval_references(self, split: str = "eval") -> list[str]:
    """The target text of each example (generated whole: nothing is cut)."""
    return [self.detokenize(row) for row in self.eval_set(split)["tgt_out"]]

  def eval_sources(self, split: str = "eval") -> list[str]:
    return [self.detokenize(row, "src") for row in self.eval_set(split)["src"]]

  def eval_source_lengths(self, split: str = "eval") -> np.ndarray:
    """Source lengths in ``length_unit`` (symbols; addition: characters;
    reorder: words), row by row."""
    return (self.eval_set(split)["src"] != PAD).sum(1)
