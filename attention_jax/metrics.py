"""Masked sequence losses and accuracies; BLEU/chrF and metrics by length.

Targets are right-padded with PAD (0); a position counts when ``target != PAD``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import _compute_p_value

from attention_jax.data.vocab import EOS, PAD


def cross_entropy(
  logits: jax.Array, targets: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
  """Summed token cross-entropy and the token count.

  logits [B, T, V], targets [B, T]. With label smoothing ε the target
  distribution is (1 − ε) one-hot + ε / V (Szegedy et al. 2016).
  """
  mask = (targets != PAD).astype(jnp.float32)
  V = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  if label_smoothing > 0:
    onehot = jax.nn.one_hot(targets, V)
    soft = onehot * (1.0 - label_smoothing) + label_smoothing / V
    losses = optax.softmax_cross_entropy(logits, soft)
  else:
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  return (losses * mask).sum(), mask.sum()


def cross_entropy_per_example(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Summed token cross-entropy and token count of each row. -> ([B], [B])."""
  mask = (targets != PAD).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  return (losses * mask).sum(axis=1), mask.sum(axis=1)


def argmax_correct(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """``token_correct(argmax(logits), targets)`` without the argmax: the
  number of non-PAD positions whose first maximum (first NaN if the row has
  one) is the target. [..., V], [...] -> scalar int.

  A position is correct iff its target's logit is a maximum ("hit") and no
  earlier index is one: a boolean any-reduction instead of an index
  min-reduction, which XLA's CPU backend runs over a materialised int32
  copy of the logits (docs/performance.md).
  """
  V = logits.shape[-1]
  top = jnp.max(logits, axis=-1, keepdims=True)
  nan_row = jnp.isnan(logits).any(axis=-1, keepdims=True)
  hit = jnp.where(nan_row, jnp.isnan(logits), logits == top)
  mine = jnp.take_along_axis(logits, targets[..., None], axis=-1)  # (..., 1)
  hit_target = jnp.where(nan_row, jnp.isnan(mine), mine == top)[..., 0]
  earlier = jnp.any(hit & (jnp.arange(V) < targets[..., None]), axis=-1)
  return (hit_target & ~earlier & (targets != PAD)).sum()


def token_correct(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Number of non-PAD target positions predicted exactly. [B, T] -> scalar."""
  mask = targets != PAD
  return ((predictions == targets) & mask).sum()


def sequence_correct(predictions: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-sequence exact match over the non-PAD target positions. -> [B] bool.

  ``predictions`` may be longer or shorter than ``targets``; it is cut or
  padded with PAD (which never matches a real target token).
  """
  T = targets.shape[1]
  if predictions.shape[1] < T:
    predictions = jnp.pad(predictions, ((0, 0), (0, T - predictions.shape[1])))
  predictions = predictions[:, :T]
  mask = targets != PAD
  return jnp.all((predictions == targets) | ~mask, axis=1)


def alignment_sums(
  attention: jax.Array, gold: jax.Array, targets: jax.Array | None = None
) -> dict[str, jax.Array]:
  """Attention against a gold alignment, summed over target positions.

  attention [..., T, S] (row t: the weights used to predict target token t),
  gold [..., T] int (the gold source position of target token t, −1 for
  none; broadcast against attention's leading axes), targets [..., T] (PAD
  and EOS are not tokens to align). Returns per leading index:

  * ``aligned``: target tokens with a gold source position;
  * ``hits``: of those, how many put their largest weight on it (argmax;
    ties go to the first position);
  * ``mass``: the summed weight α_t(gold_t) on the gold position;
  * ``unaligned``: target tokens (not PAD/EOS) left out: no unique gold source.

  ``alignment_accuracy = hits / aligned`` and ``gold_attention_mass =
  mass / aligned`` (:func:`summarize`). An attention matrix equal to the gold
  alignment scores 1 and 1; uniform attention over S positions has mass 1/S.
  """
  aligned = gold >= 0
  safe = jnp.maximum(gold, 0)
  picked = jnp.take_along_axis(
    attention, jnp.broadcast_to(safe[..., None], (*attention.shape[:-1], 1)), -1
  )
  hits = (jnp.argmax(attention, -1) == gold) & aligned
  out = {
    "aligned": aligned.sum(-1).astype(jnp.float32),
    "hits": hits.sum(-1).astype(jnp.float32),
    "mass": jnp.where(aligned, picked[..., 0].astype(jnp.float32), 0.0).sum(-1),
  }
  if targets is not None:
    real = (targets != PAD) & (targets != EOS)
    out["unaligned"] = (real & ~aligned).sum(-1).astype(jnp.float32)
  return out


def alignment_ratios(hits, mass, aligned) -> dict[str, float | None]:
  """``alignment_accuracy`` and ``gold_attention_mass`` of summed counts
  (None when no token is aligned)."""
  n = float(np.sum(aligned))
  if n == 0:
    return {"alignment_accuracy": None, "gold_attention_mass": None}
  return {
    "alignment_accuracy": float(np.sum(hits)) / n,
    "gold_attention_mass": float(np.sum(mass)) / n,
  }


# --------------------------------------------------------------------------
# Corpus metrics on text (host side), overall and by source length.
#
# BLEU (Papineni et al. 2002) and chrF (Popović 2015) come from sacrebleu
# (Post 2018) with its default settings (13a tokenisation, exponential
# smoothing; chrF with character n ≤ 6, β = 2) on *detokenized* hypotheses
# against the *raw* reference lines, so the numbers equal
# ``sacrebleu REF -i HYP`` on the same lines. Each number is stored with
# sacrebleu's signature (``nrefs|case|…|tok|…|version``).
#
# Confidence intervals and paired tests are sacrebleu's (``sacrebleu.
# significance``): B = 1000 bootstrap resamples of the sentences drawn with
# ``default_rng(12345).choice(N, (B, N))``. The 95% interval is
# [low, high] = the resampled scores' 2.5th and 97.5th percentiles, the bounds
# sacrebleu computes (``estimate_ci``; it prints them as the resampled mean ±
# half their distance, which can pass 100); the paired p-value counts
# resamples whose centred score difference exceeds the observed one,
# (c + 1) / (B + 1). Sentence statistics are summed with a count matrix
# instead of sacrebleu's (B, N, k) gather: the same integers, the same scores.

TEXT_METRICS = ("bleu", "chrf")
BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 12345  # sacrebleu's default (SACREBLEU_SEED)


def detokenize(task, ids, side: str = "tgt") -> str:
  """Text of token ids: ``task.detokenize(ids, side)`` when the task has it,
  else the vocabulary's tokens joined by spaces (stops at EOS)."""
  fn = getattr(task, "detokenize", None)
  if fn is not None:
    return fn(ids, side)
  vocab = task.src_vocab if side == "src" else task.tgt_vocab
  return " ".join(vocab.decode(ids))


def text_metric(name: str):
  """A fresh sacrebleu metric object: ``bleu`` or ``chrf``, default settings."""
  if name == "bleu":
    return BLEU(force=True)  # force: no warning about outputs ending in " ."
  if name == "chrf":
    return CHRF()
  raise ValueError(f"unknown text metric {name!r}; known: {TEXT_METRICS}")


def signature(name: str) -> str:
  """sacrebleu's signature of the metric, e.g. ``nrefs:1|case:mixed|eff:no|
  tok:13a|smooth:exp|version:2.6.0``."""
  m = text_metric(name)
  m.corpus_score(["a"], [["a"]])  # the signature needs the reference count
  return m.get_signature().format()


def corpus_score(name: str, hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Corpus BLEU or chrF in [0, 100] of one reference per hypothesis."""
  if not hypotheses:
    return float("nan")
  return float(text_metric(name).corpus_score(list(hypotheses), [list(references)]).score)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  return corpus_score("bleu", hypotheses, references)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  return corpus_score("chrf", hypotheses, references)


def sentence_stats(name: str, hypotheses: Sequence[str], references: Sequence[str]) -> np.ndarray:
  """sacrebleu's sufficient statistics per sentence, [N, k] (n-gram matches
  and totals, lengths): additive, so any subset's or resample's corpus score
  is ``score_from_stats(stats[idx].sum(0))``."""
  m = text_metric(name)
  stats = m._extract_corpus_statistics(list(hypotheses), [list(references)])
  return np.asarray(stats, np.float64).reshape(len(hypotheses), -1)


def score_from_stats(name: str, totals: np.ndarray, metric=None) -> float:
  m = metric or text_metric(name)
  return float(m._compute_score_from_stats(list(np.asarray(totals))).score)


def bootstrap_indices(
  n: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED
) -> np.ndarray:
  """sacrebleu's resamples of ``n`` sentences: [samples, n] indices."""
  return np.random.default_rng(seed).choice(n, size=(samples, n), replace=True)


def resampled_scores(name: str, stats: np.ndarray, idxs: np.ndarray) -> np.ndarray:
  """Corpus score of each resample ``idxs[b]`` of the sentences. -> [B]."""
  B, n = idxs.shape
  flat = (idxs + n * np.arange(B)[:, None]).ravel()
  counts = np.bincount(flat, minlength=B * n).reshape(B, n).astype(np.float64)
  totals = counts @ stats  # (B, k)
  m = text_metric(name)
  return np.array([score_from_stats(name, t, m) for t in totals])


def interval(scores: np.ndarray) -> tuple[float, float]:
  """The 95% interval of resampled scores: their 2.5th and 97.5th
  percentiles, as sacrebleu's ``significance.estimate_ci`` picks them."""
  s = np.sort(np.asarray(scores))
  k = len(s) // 40
  return float(s[k]), float(s[len(s) - k - 1])


def paired_p_value(scores: np.ndarray, baseline_scores: np.ndarray, observed: float) -> float:
  """sacrebleu's paired-bootstrap p-value of a system against the baseline
  (``significance._paired_bs_test``): resampled differences, centred, that
  exceed the observed ``|score − baseline|``, (c + 1) / (B + 1). When no
  resample tells the two apart (every difference 0: identical outputs, or a
  bucket where both score 0) there is nothing to test and p = 1; sacrebleu
  would print 1 / (B + 1) there, counting strictly greater differences."""
  diffs = np.abs(np.asarray(scores) - np.asarray(baseline_scores))
  if not diffs.any() and observed == 0:
    return 1.0
  return float(_compute_p_value(diffs - diffs.mean(), abs(observed)))


def seed_bootstrap(
  per_seed: Sequence[Sequence[float]],
  samples: int = BOOTSTRAP_SAMPLES,
  seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float, float]:
  """The mean over seeds of each seed's mean, and its 95% interval by a
  two-level bootstrap over seeds and examples: each of ``samples`` resamples
  draws as many seeds as there are with replacement and, within each drawn
  seed, its examples with replacement; [low, high] are the 2.5th and 97.5th
  percentiles of the resampled means (:func:`interval`). ``per_seed[s]``: the
  per-example values of seed ``s`` (e.g. 0/1 exact match; a single value for
  a seed-level statistic, which makes it a bootstrap over seeds only). With
  one seed it is the bootstrap over that seed's examples. The sweeps' curves
  and headline statistics use it (``attention_jax.sweeps``); ``compare``'s
  seed groups, whose seeds share one test set, pool the seeds' outputs and
  resample sentences (:func:`resampled_scores`). Returns (mean, low, high);
  NaNs when there is no value."""
  arrays = [np.asarray(v, np.float64) for v in per_seed if len(v)]
  if not arrays:
    return math.nan, math.nan, math.nan
  rng = np.random.default_rng(seed)
  # [S, B]: each seed's mean over a resample of its own examples
  within = np.stack([a[rng.integers(0, len(a), (samples, len(a)))].mean(1) for a in arrays])
  pick = rng.integers(0, len(arrays), (samples, len(arrays)))  # [B, S] seeds drawn
  means = within[pick, np.arange(samples)[:, None]].mean(1)
  lo, hi = interval(means)
  return float(np.mean([a.mean() for a in arrays])), lo, hi


def binary_outcomes(rate: float, n: int) -> np.ndarray:
  """``n`` 0/1 outcomes whose mean is ``rate`` (to the nearest count): the
  per-example values of an exact-match rate for :func:`seed_bootstrap`."""
  k = int(round(float(rate) * n))
  return np.concatenate([np.ones(k), np.zeros(n - k)])


def score_with_interval(
  name: str, hypotheses: Sequence[str], references: Sequence[str]
) -> tuple[float, list[float]]:
  """The corpus score and its 95% bootstrap interval ``[low, high]``."""
  if not hypotheses:
    return float("nan"), [float("nan"), float("nan")]
  stats = sentence_stats(name, hypotheses, references)
  score = score_from_stats(name, stats.sum(0))
  lo, hi = interval(resampled_scores(name, stats, bootstrap_indices(len(hypotheses))))
  return score, [lo, hi]


def source_lengths(src: np.ndarray) -> np.ndarray:
  """Non-PAD tokens per source row. [N, S] -> [N]."""
  return (np.asarray(src) != PAD).sum(axis=1)


def parse_bucket_edges(spec: str) -> list[int]:
  """``"10,20,30"`` -> [10, 20, 30]: buckets 1–10, 11–20, 21–30, 31+.

  Raises ValueError naming the value if it is not increasing positive ints.
  """
  spec = spec.strip()
  if not spec:
    return []
  try:
    edges = [int(x) for x in spec.split(",")]
  except ValueError:
    raise ValueError(
      f"length buckets {spec!r}: expected comma-separated integers like '10,20,30'"
    ) from None
  if edges[0] < 1 or any(b <= a for a, b in itertools.pairwise(edges)):
    raise ValueError(f"length buckets {spec!r}: edges must be positive and strictly increasing")
  return edges


def auto_bucket_edges(lengths: np.ndarray, max_buckets: int = 10) -> list[int]:
  """Equal-width edges (width 1, 2, 5, 10, 20, 50, …) giving ≤ max_buckets."""
  hi = int(np.max(lengths)) if len(lengths) else 1
  width = 1
  for w in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
    width = w
    if -(-hi // w) <= max_buckets:
      break
  return list(range(width, hi + width, width))


MIN_BUCKET = 30  # fewer sentences: no bootstrap interval, no p-value (too few to resample)
QUANTILE_BUCKETS = 5


def quantile_bucket_edges(
  lengths: np.ndarray, buckets: int = QUANTILE_BUCKETS, min_count: int | None = None
) -> list[int]:
  """Edges of about ``buckets`` equal-count buckets cut at the lengths' own
  quantiles (the default when ``eval.length_buckets`` is not given), then
  every bucket with fewer than ``min_count`` sentences merged into its
  smaller neighbour (all in one bucket when there are fewer than
  ``min_count`` in all)."""
  min_count = MIN_BUCKET if min_count is None else min_count
  lengths = np.asarray(lengths, np.int64)
  if not len(lengths):
    return []
  top = int(lengths.max())
  qs = np.quantile(lengths, np.arange(1, buckets) / buckets, method="lower")
  edges = sorted({int(q) for q in qs if 1 <= int(q) < top})
  while edges:
    counts = np.bincount(bucket_index(lengths, edges), minlength=len(edges) + 1)
    small = [i for i, c in enumerate(counts) if c < min_count]
    if not small:
      break
    i = min(small, key=lambda j: (counts[j], j))
    if i == 0:
      merge = 0  # with the next bucket: drop the edge above it
    elif i == len(edges):
      merge = i - 1  # the last: drop the edge below it
    else:  # the smaller of its two neighbours
      merge = i - 1 if counts[i - 1] <= counts[i + 1] else i
    edges.pop(merge)
  return edges


def bucket_index(lengths: np.ndarray, edges: Sequence[int]) -> np.ndarray:
  """Bucket of each length: i for edges[i-1] < n <= edges[i]; len(edges) above."""
  return np.searchsorted(np.asarray(edges), np.asarray(lengths), side="left")


def bucket_bounds(edges: Sequence[int], i: int) -> tuple[int, int | None]:
  lo = 1 if i == 0 else edges[i - 1] + 1
  hi = edges[i] if i < len(edges) else None
  return lo, hi


def bucket_label(edges: Sequence[int], i: int) -> str:
  lo, hi = bucket_bounds(edges, i)
  if hi is None:
    return f"{lo}+"
  return str(lo) if lo == hi else f"{lo}-{hi}"


@dataclasses.dataclass
class ExampleRecords:
  """Per-example results of one evaluation pass (host numpy / str lists).

  ``loss``: summed teacher-forced cross-entropy; ``tokens``: target tokens
  (EOS included); ``correct``: teacher-forced argmax hits; ``exact``: the
  decoded hypothesis equals the target; ``hypotheses`` are detokenized,
  ``references`` the raw reference text; ``src_length`` is in the task's
  ``length_unit`` (words of the raw source for real text). ``alignment``
  (attention models on tasks with a gold alignment): per-example
  :func:`alignment_sums` of the teacher-forced attention, keys ``aligned``,
  ``hits``, ``mass``, ``unaligned`` ([N] each); None otherwise.
  """

  src_length: np.ndarray  # [N] int
  loss: np.ndarray  # [N] float
  tokens: np.ndarray  # [N] float
  correct: np.ndarray  # [N] float
  exact: np.ndarray  # [N] bool
  hypotheses: list[str]
  references: list[str]
  src_has_unk: np.ndarray | None = None  # [N] bool
  alignment: dict[str, np.ndarray] | None = None


def summarize(
  r: ExampleRecords, index: np.ndarray | None = None, *, text: bool = True, intervals: bool = False
) -> dict[str, Any]:
  """Every metric over the examples ``index`` (default: all).

  ``count``, ``loss`` (per target token), ``perplexity`` = exp(loss),
  ``token_accuracy`` (teacher-forced), ``sequence_accuracy`` (exact match of
  the decoded output), and with ``text`` ``bleu``/``chrf`` (with
  ``intervals``, also ``bleu_ci``/``chrf_ci``: 95% bootstrap intervals
  ``[low, high]``). Metrics of an empty group are None. With
  ``r.alignment``: ``alignment_accuracy``, ``gold_attention_mass``
  (:func:`alignment_sums`), ``aligned_tokens`` and ``unaligned_tokens`` (left
  out: no unique gold source).
  """
  idx = np.arange(len(r.loss)) if index is None else np.asarray(index)
  out: dict[str, Any] = {"count": int(len(idx))}
  if r.alignment is not None:
    a = {k: v[idx] for k, v in r.alignment.items()}
    out.update(
      alignment_ratios(a["hits"], a["mass"], a["aligned"]),
      aligned_tokens=int(a["aligned"].sum()),
      unaligned_tokens=int(a["unaligned"].sum()),
    )
  text_keys = [k for name in TEXT_METRICS for k in ([name, f"{name}_ci"] if intervals else [name])]
  if len(idx) == 0:
    keys = ["loss", "perplexity", "token_accuracy", "sequence_accuracy"]
    return {**out, **{k: None for k in keys + (text_keys if text else [])}}
  n = max(float(r.tokens[idx].sum()), 1.0)
  loss = float(r.loss[idx].sum()) / n
  out.update(
    loss=loss,
    perplexity=float(np.exp(min(loss, 50.0))),
    token_accuracy=float(r.correct[idx].sum()) / n,
    sequence_accuracy=float(np.mean(r.exact[idx])),
  )
  if text:
    hyps = [r.hypotheses[i] for i in idx]
    refs = [r.references[i] for i in idx]
    for name in TEXT_METRICS:
      if intervals:
        out[name], out[f"{name}_ci"] = score_with_interval(name, hyps, refs)
      else:
        out[name] = corpus_score(name, hyps, refs)
  return out


def summarize_by_length(
  r: ExampleRecords, edges: Sequence[int], *, intervals: bool = False
) -> list[dict[str, Any]]:
  """:func:`summarize` per source-length bucket, from the bucket of the
  shortest source to that of the longest (empty ones between: count 0). A
  bucket of fewer than ``MIN_BUCKET`` sentences has no interval (None)."""
  b = bucket_index(r.src_length, edges)
  n_buckets = len(edges) + (1 if len(b) and b.max() == len(edges) else 0)
  first = int(b.min()) if len(b) else 0  # leading empty buckets are left out
  rows = []
  for i in range(first, n_buckets):
    lo, hi = bucket_bounds(edges, i)
    row = summarize(r, np.nonzero(b == i)[0], intervals=intervals)
    if intervals and row["count"] < MIN_BUCKET:  # too few sentences to resample
      row.update({f"{name}_ci": None for name in TEXT_METRICS})
    rows.append({"bucket": bucket_label(edges, i), "min_length": lo, "max_length": hi, **row})
  return rows


def summarize_by_unk(r: ExampleRecords) -> dict[str, dict[str, Any]] | None:
  """Metrics for sources with and without UNK; None if no source has UNK."""
  if r.src_has_unk is None or not r.src_has_unk.any():
    return None
  return {
    "src_with_unk": summarize(r, np.nonzero(r.src_has_unk)[0]),
    "src_without_unk": summarize(r, np.nonzero(~r.src_has_unk)[0]),
  }
