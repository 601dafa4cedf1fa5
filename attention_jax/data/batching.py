"""The task protocol, and the batching the tasks share.

Sequence-to-sequence batches are right-padded arrays (:func:`pad_batch`); tokenized text
goes through :class:`BucketedBatches` (length buckets, padding, seeded shuffling, repeat),
batch ``k`` a pure function of ``(seed, k)``: the pipeline's state in a checkpoint is one
integer, so a resumed run sees exactly the batches an uninterrupted one would.
Documented in docs/data.md#the-task-protocol and docs/data.md#pipeline.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Sequence

import numpy as np

from attention_jax.data.vocab import BOS, EOS, PAD


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
    src[i, : len(s)] = s
    tgt_in[i, 0] = BOS
    tgt_in[i, 1 : len(t) + 1] = t
    tgt_out[i, : len(t)] = t
    tgt_out[i, len(t)] = EOS
  return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def parse_boundaries(text: str, max_length: int) -> tuple[int, ...]:
  """``"8,16,32"`` → (8, 16, 32, max_length); ``""`` → (max_length,).

  Raises ValueError (one line) unless they are increasing integers in
  ``1..max_length``.
  """
  parts = [p.strip() for p in text.split(",") if p.strip()]
  try:
    values = [int(p) for p in parts]
  except ValueError:
    raise ValueError(
      f"config key 'data.bucket_boundaries' has value {text!r}; "
      "expected comma-separated integers, e.g. '8,16,32'"
    ) from None
  if any(b <= 0 or b > max_length for b in values) or values != sorted(set(values)):
    raise ValueError(
      f"config key 'data.bucket_boundaries' has value {text!r}; "
      f"expected increasing integers in 1..data.max_length "
      f"({max_length})"
    )
  if not values or values[-1] != max_length:
    values.append(max_length)
  return tuple(values)


class BucketedBatches:
  """``batch(k)`` for k = 0, 1, … (forever): padded, bucketed, shuffled."""

  def __init__(
    self,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    batch_size: int,
    boundaries: Sequence[int],
    seed: int,
  ):
    if not sources:
      raise ValueError("no training examples")
    self.sources, self.targets = sources, targets
    self.batch_size = batch_size
    self.boundaries = tuple(boundaries)
    self.seed = seed
    lengths = np.array([max(len(s), len(t)) for s, t in zip(sources, targets, strict=True)])
    if lengths.max() > self.boundaries[-1]:
      raise ValueError(
        f"an example has {lengths.max()} tokens, more than the "
        f"last bucket boundary {self.boundaries[-1]}"
      )
    self.bucket_of = np.searchsorted(np.array(self.boundaries), lengths, side="left")
    counts = np.bincount(self.bucket_of, minlength=len(self.boundaries))
    self.bucket_sizes = counts.tolist()
    self.batches_per_epoch = int(sum(math.ceil(c / batch_size) for c in counts))
    self._plan_epoch = -1
    self._plan: list[tuple[int, list[int]]] = []

  def epoch_plan(self, epoch: int) -> list[tuple[int, list[int]]]:
    """[(bucket, example indices)] of one epoch, in order."""
    if epoch != self._plan_epoch:
      order = np.random.default_rng([self.seed, epoch]).permutation(len(self.sources))
      buffers: list[list[int]] = [[] for _ in self.boundaries]
      firsts: list[list[int]] = [[] for _ in self.boundaries]
      plan = []
      for i in order.tolist():
        b = int(self.bucket_of[i])
        buffers[b].append(i)
        if len(firsts[b]) < self.batch_size:
          firsts[b].append(i)
        if len(buffers[b]) == self.batch_size:
          plan.append((b, buffers[b]))
          buffers[b] = []
      for b, buf in enumerate(buffers):
        if buf:
          k = 0
          while len(buf) < self.batch_size:
            buf.append(firsts[b][k % len(firsts[b])])
            k += 1
          plan.append((b, buf))
      assert len(plan) == self.batches_per_epoch
      self._plan_epoch, self._plan = epoch, plan
    return self._plan

  def batch(self, index: int) -> dict[str, np.ndarray]:
    epoch, j = divmod(index, self.batches_per_epoch)
    b, rows = self.epoch_plan(epoch)[j]
    width = self.boundaries[b]
    return pad_batch([(self.sources[i], self.targets[i]) for i in rows], width, width)


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
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="data")
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
