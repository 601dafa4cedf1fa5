"""Held-out splits that are really held out: each source belongs to one split.

A stable 64-bit hash of a source's token ids (splitmix64 folded over the ids, then the
length) gives ``u(x) ∈ [0, 1)``: train if u(x) < 0.8, eval if u(x) < 0.9, test otherwise.
The rule depends on the source alone (not the seed), so every seed is evaluated on the same
held-out sentences. A stratum (a length; for ``addition`` the operands' digit counts) of at
most :data:`ENUMERATE_LIMIT` sequences is enumerated and a split draws from its own
members; a larger one is sampled by rejection (each split holds ≥ 10% of it).
Documented in docs/evaluation.md#held-out-means-held-out.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import numpy as np

from attention_jax.data.vocab import PAD

SPLITS = ("train", "eval", "test")
SPLIT_IDS = {s: i for i, s in enumerate(SPLITS)}
BOUNDS = (0.8, 0.9)  # u < 0.8: train; u < 0.9: eval; else test
FRACTIONS = {"train": 0.8, "eval": 0.1, "test": 0.1}
ENUMERATE_LIMIT = 100_000  # enumerate a stratum with at most this many sources
RULE = (
  "a stable hash of each source's token ids assigns it to exactly one "
  "split (train 80%, eval 10%, test 10%), the same for every seed; "
  "training never draws an eval or test source"
)


def _mix(z: np.ndarray) -> np.ndarray:
  """The splitmix64 finalizer (Steele et al. 2014) on uint64, wrapping."""
  z = z + np.uint64(0x9E3779B97F4A7C15)
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def source_hash(ids: np.ndarray) -> np.ndarray:
  """[N, W] token ids (PAD ignored wherever it is) -> [N] uint64."""
  ids = np.asarray(ids)
  if ids.ndim == 1:
    ids = ids[None]
  with np.errstate(over="ignore"):
    h = np.full(len(ids), 0x243F6A8885A308D3, np.uint64)
    for t in range(ids.shape[1]):
      col = ids[:, t]
      h = np.where(col != PAD, _mix(h ^ col.astype(np.uint64)), h)
    length = (ids != PAD).sum(axis=1).astype(np.uint64)
    return _mix(h ^ (length * np.uint64(0x100000001B3)))


def split_of(ids: np.ndarray) -> np.ndarray:
  """The split id (0 train, 1 eval, 2 test) of each source row. [N, W] -> [N]."""
  u = (source_hash(ids) >> np.uint64(11)).astype(np.float64) * 2.0**-53
  return np.searchsorted(np.array(BOUNDS), u, side="right").astype(np.int8)


class Strata:
  """Sampling by stratum, restricted to one split.

  ``draw(rng, stratum, m) -> [m, W]`` draws ``m`` candidate sources of a
  stratum uniformly (W may depend on the stratum); ``space(stratum)`` is the
  number of distinct sources in it; ``enumerate(stratum) -> [space, W]`` lists
  them all (called only for spaces up to :data:`ENUMERATE_LIMIT`).
  """

  def __init__(
    self,
    strata: Sequence[Hashable],
    draw: Callable[[np.random.Generator, Hashable, int], np.ndarray],
    space: Callable[[Hashable], int],
    enumerate_: Callable[[Hashable], np.ndarray],
  ):
    self.strata = list(strata)
    self.draw = draw
    self.space = space
    self._members: dict[Hashable, list[np.ndarray]] = {}
    for s in self.strata:
      if space(s) <= ENUMERATE_LIMIT:
        every = enumerate_(s)
        which = split_of(every)
        self._members[s] = [every[which == k] for k in range(len(SPLITS))]

  def members(self, stratum, split: str) -> np.ndarray | None:
    """Every source of ``split`` in an enumerated stratum (else None)."""
    m = self._members.get(stratum)
    return None if m is None else m[SPLIT_IDS[split]]

  def available(self, split: str) -> list:
    """Strata with at least one source of ``split`` (all non-enumerated ones)."""
    return [
      s for s in self.strata if s not in self._members or len(self._members[s][SPLIT_IDS[split]])
    ]

  def sample(
    self, rng: np.random.Generator, split: str, n: int
  ) -> list[tuple[Hashable, np.ndarray]]:
    """``n`` sources of ``split``: a stratum uniform over :meth:`available`,
    then a source uniform among the stratum's sources of that split.
    Returns ``[(stratum, source row)]`` in draw order."""
    avail = self.available(split)
    if not avail:
      raise ValueError(
        f"no {split} source in any of the strata {self.strata[0]}..{self.strata[-1]}"
      )
    picks = rng.integers(0, len(avail), size=n)
    out: list = [None] * n
    k = SPLIT_IDS[split]
    for j, stratum in enumerate(avail):  # fixed order: deterministic
      where = np.nonzero(picks == j)[0]
      if not len(where):
        continue
      members = self.members(stratum, split)
      if members is not None:
        rows = members[rng.integers(0, len(members), size=len(where))]
      else:
        rows = rejection_sample(lambda m, s=stratum: self.draw(rng, s, m), len(where), k)
      for i, row in zip(where, rows, strict=True):
        out[i] = (stratum, row)
    return out


def rejection_sample(
  draw: Callable[[int], np.ndarray], n: int, split_id: int, max_rounds: int = 1000
) -> np.ndarray:
  """``n`` rows of ``draw(m)`` (a [m, W] array of sources) that belong to
  ``split_id``, in the order drawn."""
  frac = FRACTIONS[SPLITS[split_id]]
  kept: list[np.ndarray] = []
  have = 0
  for _ in range(max_rounds):
    m = int((n - have) / frac * 1.25) + 8
    cand = draw(m)
    good = cand[split_of(cand) == split_id]
    kept.append(good)
    have += len(good)
    if have >= n:
      return np.concatenate(kept)[:n]
  raise ValueError(
    f"found only {have} of {n} {SPLITS[split_id]} sources in "
    f"{max_rounds} rounds of rejection sampling"
  )


def describe_strata(
  strata: Strata, label: Callable[[Hashable], str]
) -> tuple[list[dict], dict[str, list[str]]]:
  """Per enumerated (small) stratum, how many distinct sources each split
  has; and, per split, the strata where it has none (never drawn)."""
  rows = []
  for s in strata.strata:
    if strata.members(s, "train") is None:
      continue
    rows.append(
      {
        "stratum": label(s),
        "space": int(strata.space(s)),
        **{sp: int(len(strata.members(s, sp))) for sp in SPLITS},
      }
    )
  missing = {
    sp: [label(s) for s in strata.strata if s not in strata.available(sp)] for sp in SPLITS
  }
  return rows, missing


def summary_line(name: str, rows: list[dict], missing: dict[str, list[str]], unit: str) -> str:
  """One log line: the rule, the small strata's counts, and empty strata."""
  text = f"held-out splits of {name!r}: {RULE}"
  if rows:
    text += (
      "; distinct sources (train/eval/test of all) by "
      + unit
      + ": "
      + ", ".join(
        f"{r['stratum']}: {r['train']}/{r['eval']}/{r['test']} of {r['space']}" for r in rows
      )
    )
  for sp in SPLITS:
    if missing[sp]:
      text += (
        f"; no {sp} source of {unit} {', '.join(missing[sp])}: "
        f"{sp} never draws {'it' if len(missing[sp]) == 1 else 'them'}"
      )
  return text
