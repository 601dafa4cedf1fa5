"""The training pipeline for tokenized text: length buckets, padding, seeded
shuffling, repeat — with batch ``k`` a pure function of ``(seed, k)``.

Why not grain: grain's ``MapDataset(...).shuffle(seed).batch(n)`` resumes
exactly too, but it is absent on the GPU machine and it pads every batch to
one length or needs a custom bucketing transform. Here the whole state is one
integer (the next batch's index), stored in the checkpoint's JSON, and a
resumed run sees exactly the batches an uninterrupted one would.

Each epoch ``e``: the examples are permuted with ``default_rng([seed, e])`` and
dealt, in that order, into length buckets (an example's length is
``max(len(source), len(target))``; a bucket is the smallest boundary that
fits); a bucket emits a batch each time it holds ``batch_size`` examples. At
the end of the epoch a part-full bucket is filled up with that bucket's first
examples of the epoch, so every example is seen every epoch and every batch
has ``batch_size`` rows. Batches of bucket ``b`` are padded to width ``b``
(``src``) and ``b + 1`` (``tgt_in``/``tgt_out``, which add BOS/EOS), so there
is one compiled shape per bucket. Epochs repeat forever; the number of batches
per epoch, ``Σ_b ceil(n_b / batch_size)``, is the same in every epoch.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from attention_jax.data.synthetic import pad_batch


def parse_boundaries(text: str, max_length: int) -> tuple[int, ...]:
  """``"8,16,32"`` → (8, 16, 32, max_length); ``""`` → (max_length,).

  Raises ValueError (one line) unless they are increasing integers in
  ``1..max_length``.
  """
  parts = [p.strip() for p in text.split(",") if p.strip()]
  try:
    values = [int(p) for p in parts]
  except ValueError:
    raise ValueError(f"config key 'data.bucket_boundaries' has value {text!r}; "
                     "expected comma-separated integers, e.g. '8,16,32'") from None
  if any(b <= 0 or b > max_length for b in values) or values != sorted(set(values)):
    raise ValueError(f"config key 'data.bucket_boundaries' has value {text!r}; "
                     f"expected increasing integers in 1..data.max_length "
                     f"({max_length})")
  if not values or values[-1] != max_length:
    values.append(max_length)
  return tuple(values)


class BucketedBatches:
  """``batch(k)`` for k = 0, 1, … (forever): padded, bucketed, shuffled."""

  def __init__(self, sources: Sequence[Sequence[int]],
               targets: Sequence[Sequence[int]], batch_size: int,
               boundaries: Sequence[int], seed: int):
    if not sources:
      raise ValueError("no training examples")
    self.sources, self.targets = sources, targets
    self.batch_size = batch_size
    self.boundaries = tuple(boundaries)
    self.seed = seed
    lengths = np.array([max(len(s), len(t)) for s, t in zip(sources, targets)])
    if lengths.max() > self.boundaries[-1]:
      raise ValueError(f"an example has {lengths.max()} tokens, more than the "
                       f"last bucket boundary {self.boundaries[-1]}")
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
    return pad_batch([(self.sources[i], self.targets[i]) for i in rows],
                     width, width)
