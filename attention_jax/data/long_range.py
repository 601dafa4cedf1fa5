"""Long-range dependency tasks for recurrent networks: docs/vanishing.md#long-range-tasks.

``adding`` (Hochreiter & Schmidhuber 1997, Exp. 4), ``copy_memory`` (Arjovsky et al.
2016, §4.1) and ``temporal_order`` (Pascanu et al. 2013, §4.3), each with the loss of a
trivial predictor as ``baseline``. A batch is a pure function of ``(seed, split, index)``
and the splits are disjoint (docs/evaluation.md#held-out-means-held-out).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from absl import logging

from attention_jax.config_fields import context
from attention_jax.data import heldout
from attention_jax.data.batching import IndexedIterator
from attention_jax.data.vocab import Vocabulary

_SPLIT_IDS = {"train": 0, "eval": 1, "test": 2}

COPY_SYMBOLS = 10  # symbols to remember (Arjovsky et al. 2016)
COPY_ALPHABET = 8  # alphabet size


@dataclasses.dataclass(frozen=True)
class TaskSpec:
  """What a model needs to know about a long-range task."""

  objective: str  # name in attention_jax.objectives
  input_channels: int  # real-valued channels; 0 = token ids (embedded)
  output: str  # "regression" | "classification" | "per_step"


SPECS = {
  "adding": TaskSpec("regression", 2, "regression"),
  "copy_memory": TaskSpec("sequence_labelling", 0, "per_step"),
  "temporal_order": TaskSpec("classification", 0, "classification"),
}
TASKS = tuple(sorted(SPECS))


def spec(task: str) -> TaskSpec:
  return SPECS[task]


# --------------------------------------------------------------------------
# Generators: (rng, n, T) -> dict of arrays


def adding_examples(rng: np.random.Generator, n: int, T: int) -> dict[str, np.ndarray]:
  """Adding problem: inputs [n, T, 2], target [n]. Needs T >= 2."""
  values = rng.uniform(0.0, 1.0, size=(n, T)).astype(np.float32)
  half = T // 2
  first = rng.integers(0, half, size=n)  # one marker in each half
  second = rng.integers(half, T, size=n)
  markers = np.zeros((n, T), np.float32)
  rows = np.arange(n)
  markers[rows, first] = 1.0
  markers[rows, second] = 1.0
  target = values[rows, first] + values[rows, second]
  return {
    "inputs": np.stack([values, markers], axis=-1),  # (n, T, 2)
    "target": target.astype(np.float32),
    "weight": np.ones(n, np.float32),
    "baseline": ((target - 1.0) ** 2).astype(np.float32),  # always predict 1
  }


def copy_vocabulary() -> Vocabulary:
  """blank, the 8 symbols, the delimiter (ids 4, 5-12, 13)."""
  return Vocabulary.from_symbols(["_", *(chr(ord("a") + i) for i in range(COPY_ALPHABET)), ":"])


COPY_BLANK = 4
COPY_FIRST_SYMBOL = 5
COPY_DELIMITER = 4 + COPY_ALPHABET + 1


def copy_memory_baseline(T: int) -> float:
  """Memoryless cross-entropy per step: 10 · ln 8 / (T + 20)."""
  return COPY_SYMBOLS * math.log(COPY_ALPHABET) / (T + 2 * COPY_SYMBOLS)


def copy_memory_examples(rng: np.random.Generator, n: int, T: int) -> dict[str, np.ndarray]:
  """Copy memory: inputs and labels [n, T + 20]. Needs T >= 1."""
  K = COPY_SYMBOLS
  L = T + 2 * K
  symbols = rng.integers(0, COPY_ALPHABET, size=(n, K)) + COPY_FIRST_SYMBOL
  inputs = np.full((n, L), COPY_BLANK, np.int32)
  inputs[:, :K] = symbols
  inputs[:, K + T - 1] = COPY_DELIMITER
  labels = np.full((n, L), COPY_BLANK, np.int32)
  labels[:, -K:] = symbols
  scored = np.zeros((n, L), bool)
  scored[:, -K:] = True
  return {
    "inputs": inputs,
    "labels": labels,
    "scored": scored,
    "weight": np.ones(n, np.float32),
    "baseline": np.full(n, copy_memory_baseline(T), np.float32),
  }


ORDER_CLASSES = ("XX", "XY", "YX", "YY")


def order_vocabulary() -> Vocabulary:
  """Distractors a-d and the relevant symbols X, Y (ids 4-7, 8, 9)."""
  return Vocabulary.from_symbols(["a", "b", "c", "d", "X", "Y"])


def temporal_order_examples(rng: np.random.Generator, n: int, T: int) -> dict[str, np.ndarray]:
  """Temporal order: inputs [n, T], labels [n] (ids 4-7 = XX, XY, YX, YY).

  Needs T >= 10 so that both windows are non-empty.
  """
  inputs = (rng.integers(0, 4, size=(n, T)) + 4).astype(np.int32)
  lo1, hi1 = T // 10, max(2 * T // 10, T // 10 + 1)
  lo2, hi2 = 5 * T // 10, max(6 * T // 10, 5 * T // 10 + 1)
  t1 = rng.integers(lo1, hi1, size=n)
  t2 = rng.integers(lo2, hi2, size=n)
  first_y = rng.integers(0, 2, size=n)
  second_y = rng.integers(0, 2, size=n)
  rows = np.arange(n)
  inputs[rows, t1] = 8 + first_y
  inputs[rows, t2] = 8 + second_y
  return {
    "inputs": inputs,
    "labels": (4 + 2 * first_y + second_y).astype(np.int32),
    "weight": np.ones(n, np.float32),
    "baseline": np.full(n, math.log(4.0), np.float32),  # uniform guess
  }


GENERATORS = {
  "adding": adding_examples,
  "copy_memory": copy_memory_examples,
  "temporal_order": temporal_order_examples,
}
# The part of an example that decides its split (None: continuous inputs).
HELD_OUT_KEY = {
  "adding": None,
  "copy_memory": lambda ex: ex["inputs"][:, :COPY_SYMBOLS],
  "temporal_order": lambda ex: ex["inputs"],
}
HELD_OUT_RULE = {
  "adding": (
    "continuous inputs: each split's values are drawn independently "
    "from U[0, 1], so two sequences coincide with probability 0 "
    "(disjoint by construction)"
  ),
  "copy_memory": (f"{heldout.RULE}; the hashed source is the {COPY_SYMBOLS} symbols to remember"),
  "temporal_order": f"{heldout.RULE}; the hashed source is the whole input",
}
MIN_LENGTH = {"adding": 2, "copy_memory": 1, "temporal_order": 10}


@dataclasses.dataclass(frozen=True, kw_only=True)
class LongRangeConfig:
  """The ``data.*`` keys a long-range task reads."""

  task: str  # adding | copy_memory | temporal_order
  seed: int = context()  # the run's seed: training batch i is drawn from (seed, i)
  batch_size: int = context()  # train.batch_size
  length: int = 100  # T: the span of the dependency (at least MIN_LENGTH[task])
  eval_examples: int = 1000  # size of the eval and of the test set


class LongRangeTask:
  """A long-range task with the interface of :class:`SyntheticTask`."""

  config_class = LongRangeConfig

  def __init__(self, settings: LongRangeConfig, workdir: str | None = None):
    del workdir  # nothing is saved: the vocabulary follows from the settings
    self.name = settings.task
    self.spec = spec(self.name)
    self.objective = self.spec.objective
    self.length = settings.length
    if self.length < MIN_LENGTH[self.name]:
      raise ValueError(
        f"data.length must be >= {MIN_LENGTH[self.name]} for task {self.name!r}, got {self.length}"
      )
    self.seed = settings.seed
    self.batch_size = settings.batch_size
    self.eval_examples = settings.eval_examples
    if self.name == "copy_memory":
      self.src_vocab = self.tgt_vocab = copy_vocabulary()
    elif self.name == "temporal_order":
      self.src_vocab = order_vocabulary()
      self.tgt_vocab = Vocabulary.from_symbols(ORDER_CLASSES)
    else:  # real-valued inputs and targets: no symbols
      self.src_vocab = self.tgt_vocab = Vocabulary.from_symbols([])

  def held_out(self) -> dict:
    return {"rule": HELD_OUT_RULE[self.name]}

  def _rng(self, split: str, index: int) -> np.random.Generator:
    # A distinct first word keeps these streams apart from synthetic.py's.
    return np.random.default_rng([self.seed, 1000 + _SPLIT_IDS[split], index])

  def examples(self, split: str, index: int, n: int) -> dict[str, np.ndarray]:
    """``n`` examples of ``split``; with discrete inputs, only the split's own
    (candidates of other splits are drawn and dropped)."""
    rng = self._rng(split, index)

    def generate(m):
      return GENERATORS[self.name](rng, m, self.length)

    key = HELD_OUT_KEY[self.name]
    if key is None:
      return generate(n)
    want = heldout.SPLIT_IDS[split]
    parts, have = [], 0
    while have < n:
      ex = generate(int((n - have) / heldout.FRACTIONS[split] * 1.25) + 8)
      keep = heldout.split_of(key(ex)) == want
      parts.append({k: v[keep] for k, v in ex.items()})
      have += int(keep.sum())
    return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}

  def train_batch(self, index: int) -> dict[str, np.ndarray]:
    return self.examples("train", index, self.batch_size)

  def train_iterator(self) -> IndexedIterator:
    logging.info("held-out splits of %r: %s", self.name, self.held_out()["rule"])
    return IndexedIterator(self.train_batch)

  def count_tokens(self, batch) -> int:
    """Input time steps in the batch."""
    return int(np.prod(batch["inputs"].shape[:2]))

  def eval_set(self, split: str = "eval") -> dict[str, np.ndarray]:
    return self.examples(split, 0, self.eval_examples)
