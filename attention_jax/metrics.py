"""Masked sequence losses and accuracies; BLEU/chrF and metrics by length.

Targets are right-padded with PAD (0); a position counts when ``target != PAD``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attention_jax.data.vocab import PAD


def cross_entropy(logits: jax.Array, targets: jax.Array,
                  label_smoothing: float = 0.0) -> tuple[jax.Array, jax.Array]:
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


def cross_entropy_per_example(logits: jax.Array, targets: jax.Array
                              ) -> tuple[jax.Array, jax.Array]:
  """Summed token cross-entropy and token count of each row. -> ([B], [B])."""
  mask = (targets != PAD).astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets)
  return (losses * mask).sum(axis=1), mask.sum(axis=1)


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


# --------------------------------------------------------------------------
# Corpus metrics on text (host side), overall and by source length.
#
# BLEU (Papineni et al. 2002) and chrF (Popović 2015) come from sacrebleu
# (Post 2018) with its default settings (13a tokenisation, exponential
# smoothing; chrF with character n ≤ 6, β = 2) on *detokenized* text, so the
# numbers equal ``sacrebleu REF -i HYP`` on the same lines.


def detokenize(task, ids, side: str = "tgt") -> str:
  """Text of token ids: ``task.detokenize(ids, side)`` when the task has it,
  else the vocabulary's tokens joined by spaces (stops at EOS)."""
  fn = getattr(task, "detokenize", None)
  if fn is not None:
    return fn(ids, side)
  vocab = task.src_vocab if side == "src" else task.tgt_vocab
  return " ".join(vocab.decode(ids))


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Corpus BLEU in [0, 100] of one reference per hypothesis."""
  import sacrebleu
  if not hypotheses:
    return float("nan")
  return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)],
                                     force=True).score)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
  """Corpus chrF in [0, 100] of one reference per hypothesis."""
  import sacrebleu
  if not hypotheses:
    return float("nan")
  return float(sacrebleu.corpus_chrf(list(hypotheses), [list(references)]).score)


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
    raise ValueError(f"length buckets {spec!r}: expected comma-separated "
                     "integers like '10,20,30'") from None
  if edges[0] < 1 or any(b <= a for a, b in zip(edges, edges[1:])):
    raise ValueError(f"length buckets {spec!r}: edges must be positive and "
                     "strictly increasing")
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
  decoded hypothesis equals the target; texts are detokenized.
  """
  src_length: np.ndarray            # [N] int
  loss: np.ndarray                  # [N] float
  tokens: np.ndarray                # [N] float
  correct: np.ndarray               # [N] float
  exact: np.ndarray                 # [N] bool
  hypotheses: list[str]
  references: list[str]
  src_has_unk: np.ndarray | None = None   # [N] bool


def summarize(r: ExampleRecords, index: np.ndarray | None = None, *,
              text: bool = True) -> dict[str, Any]:
  """Every metric over the examples ``index`` (default: all).

  ``count``, ``loss`` (per target token), ``perplexity`` = exp(loss),
  ``token_accuracy`` (teacher-forced), ``sequence_accuracy`` (exact match of
  the decoded output), and with ``text`` ``bleu``/``chrf``. Metrics of an
  empty group are None.
  """
  idx = np.arange(len(r.loss)) if index is None else np.asarray(index)
  out: dict[str, Any] = {"count": int(len(idx))}
  if len(idx) == 0:
    keys = ["loss", "perplexity", "token_accuracy", "sequence_accuracy"]
    return {**out, **{k: None for k in keys + (["bleu", "chrf"] if text else [])}}
  n = max(float(r.tokens[idx].sum()), 1.0)
  loss = float(r.loss[idx].sum()) / n
  out.update(loss=loss, perplexity=float(np.exp(min(loss, 50.0))),
             token_accuracy=float(r.correct[idx].sum()) / n,
             sequence_accuracy=float(np.mean(r.exact[idx])))
  if text:
    hyps = [r.hypotheses[i] for i in idx]
    refs = [r.references[i] for i in idx]
    out.update(bleu=corpus_bleu(hyps, refs), chrf=corpus_chrf(hyps, refs))
  return out


def summarize_by_length(r: ExampleRecords, edges: Sequence[int]
                        ) -> list[dict[str, Any]]:
  """:func:`summarize` per source-length bucket, from the bucket of the
  shortest source to that of the longest (empty ones between: count 0)."""
  b = bucket_index(r.src_length, edges)
  n_buckets = len(edges) + (1 if len(b) and b.max() == len(edges) else 0)
  first = int(b.min()) if len(b) else 0   # leading empty buckets are left out
  rows = []
  for i in range(first, n_buckets):
    lo, hi = bucket_bounds(edges, i)
    rows.append({"bucket": bucket_label(edges, i), "min_length": lo,
                 "max_length": hi, **summarize(r, np.nonzero(b == i)[0])})
  return rows


def summarize_by_unk(r: ExampleRecords) -> dict[str, dict[str, Any]] | None:
  """Metrics for sources with and without UNK; None if no source has UNK."""
  if r.src_has_unk is None or not r.src_has_unk.any():
    return None
  return {"src_with_unk": summarize(r, np.nonzero(r.src_has_unk)[0]),
          "src_without_unk": summarize(r, np.nonzero(~r.src_has_unk)[0])}
