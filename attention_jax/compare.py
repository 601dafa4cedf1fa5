"""Compare trained models on one split, with intervals and significance.

    compare_workdirs([["A"], ["B1", "B2", "B3"]], split="test", beam_size=4)

Each group of workdirs is one model, several workdirs in a group its seeds. BLEU and chrF
overall and per source-length bucket, a 95% bootstrap interval and the paired-bootstrap
p-value against the first model (sacrebleu's), and the seeds' mean ± standard deviation.
The library behind ``experiments.compare``: docs/evaluation.md#intervals-and-p-values.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from attention_jax import config as config_lib
from attention_jax import environment, evaluation, fileio, plots, writers
from attention_jax import metrics as metrics_lib
from attention_jax import workdir as workdir_lib
from attention_jax.errors import EvalError


class CompareError(EvalError):
  """The workdirs cannot be compared. The message is one line."""


@dataclasses.dataclass
class Outputs:
  """One workdir's scored outputs on the split."""

  workdir: str
  model: str
  step: int
  decoding: dict[str, Any]
  unit: str
  hypotheses: list[str]
  references: list[str]
  lengths: np.ndarray  # [N] source lengths in ``unit``
  reused: bool  # read from eval/ rather than decoded now


def _wanted(workdir: str, step, beam_size, length_penalty) -> tuple[int | None, dict]:
  """The checkpoint step and decoding settings an evaluation must have."""
  config = evaluation.with_decoding(workdir_lib.read_config(workdir), beam_size, length_penalty)
  eval_config = config.eval
  decoding = {
    "beam_size": eval_config.beam_size,
    "length_penalty": eval_config.length_penalty,
    "max_length_a": eval_config.max_length_a,
    "max_length_b": eval_config.max_length_b,
  }
  return workdir_lib.find_step(workdir, step), decoding


def _read_examples(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def workdir_outputs(
  workdir: str,
  split: str,
  *,
  beam_size: int | None = None,
  length_penalty: float | None = None,
  step: int | str | None = None,
) -> Outputs:
  """The split's outputs of ``workdir``: ``eval/`` reused when it holds the
  same step, split and decoding (and this version's scored text), else
  decoded now by :func:`evaluation.evaluate_workdir` (which rewrites
  ``eval/``)."""
  workdir = os.path.abspath(workdir)
  want_step, want_decoding = _wanted(workdir, step, beam_size, length_penalty)
  json_path = os.path.join(workdir, "eval", f"{split}.json")
  examples_path = os.path.join(workdir, "eval", f"{split}_examples.jsonl")
  rep, reused = None, False
  if os.path.exists(json_path) and os.path.exists(examples_path):
    with open(json_path, encoding="utf-8") as f:
      old = json.load(f)
    if (
      old.get("step") == want_step
      and old.get("split") == split
      and old.get("decoding") == want_decoding
      and old.get("scoring")
    ):
      rep, reused = old, True
  if rep is None:
    rep, _ = evaluation.evaluate_workdir(
      workdir, split, beam_size=beam_size, length_penalty=length_penalty, step=step
    )
  ex = _read_examples(examples_path)
  return Outputs(
    workdir=workdir,
    model=rep["model"],
    step=int(rep["step"]),
    decoding=rep["decoding"],
    unit=rep.get("length_unit", "tokens"),
    hypotheses=[e["hypothesis"] for e in ex],
    references=[e["reference"] for e in ex],
    lengths=np.array([e["source_length"] for e in ex], np.int64),
    reused=reused,
  )


def _check_same_test_set(outputs: Sequence[Outputs], split: str) -> None:
  first = outputs[0]
  for o in outputs[1:]:
    if len(o.references) != len(first.references):
      raise CompareError(
        f"{o.workdir} has {len(o.references)} {split} references but "
        f"{first.workdir} has {len(first.references)}: compare needs the same "
        "test sentences"
      )
    for i, (a, b) in enumerate(zip(first.references, o.references, strict=True)):
      if a != b:
        raise CompareError(
          f"the {split} references of {o.workdir} and {first.workdir} differ "
          f"(sentence {i + 1}: {b[:40]!r} vs {a[:40]!r}): compare needs the "
          "same test sentences"
        )
    if o.unit != first.unit:
      raise CompareError(
        f"{o.workdir} measures source length in {o.unit}, {first.workdir} in {first.unit}"
      )


# What the seeds of one model share: the model and its data (training may differ).
_ONE_MODEL = ("model.", "data.")


def _check_seed_group(group: Sequence[str]) -> None:
  """The workdirs of one group have the same ``model.*`` and ``data.*``:
  comma-joined workdirs are runs (seeds) of one model, not several models."""
  first = config_lib.flatten(workdir_lib.read_config(group[0]))
  for w in group[1:]:
    other = config_lib.flatten(workdir_lib.read_config(w))
    for key in sorted(set(first) | set(other)):
      if not key.startswith(_ONE_MODEL) or first.get(key) == other.get(key):
        continue
      raise CompareError(
        f"--workdirs: {group[0]},{w} are joined as seeds of one model but differ in "
        f"{key} ({first.get(key)!r} vs {other.get(key)!r}); separate models with spaces "
        "(--workdirs A B), join only seeds with commas"
      )


def _label(group: Sequence[Outputs]) -> str:
  names = ",".join(os.path.basename(o.workdir.rstrip("/")) for o in group)
  models = sorted({o.model for o in group})
  return f"{'/'.join(models)} ({names})"


def _subset_scores(
  stats: list[np.ndarray], idx: np.ndarray, boot: np.ndarray, name: str
) -> dict[str, Any]:
  """One group's score, resamples and seed spread on the sentences ``idx``."""
  pooled = sum(s[idx] for s in stats)  # (n, k)
  out = {
    "score": metrics_lib.score_from_stats(name, pooled.sum(0)),
    "resampled": metrics_lib.resampled_scores(name, pooled, boot),
  }
  if len(stats) > 1:
    per_seed = [metrics_lib.score_from_stats(name, s[idx].sum(0)) for s in stats]
    out["seed_mean"] = float(np.mean(per_seed))
    out["seed_std"] = float(np.std(per_seed, ddof=1))
  return out


def compare_workdirs(
  groups: Sequence[Sequence[str]],
  split: str = "test",
  *,
  beam_size: int | None = None,
  length_penalty: float | None = None,
  step: int | str | None = None,
  out: str | None = None,
  length_buckets: str | None = None,
  on_markdown: Callable[[str], None] | None = None,
) -> dict[str, Any]:
  """Scores every group on ``split`` and writes ``compare.{md,csv}`` and
  ``compare_by_length.png`` into ``out`` (``on_markdown(table)`` first, so a
  write that fails hides no result). With one model the table carries a note:
  p-values need two. Returns ``{"rows": [...], "paths":
  {...}, "markdown": str}``; a row per (model, bucket) with ``bleu``,
  ``bleu_ci`` ([low, high]), ``bleu_p`` (None for the first model),
  ``bleu_seed_mean``/``bleu_seed_std`` (groups of several seeds), the same
  for ``chrf``, and ``bucket`` (``"all"`` overall), ``count``."""
  if split not in evaluation.SPLITS:
    raise CompareError(f"--split {split!r}: allowed: {', '.join(evaluation.SPLITS)}")
  if len(groups) < 1 or any(not g for g in groups):
    raise CompareError(
      "--workdirs: give at least one workdir (groups of seeds are comma-separated)"
    )
  seen = [w for g in groups for w in g]
  for w in seen:
    if not os.path.isdir(w):
      raise CompareError(f"--workdirs: {w} is not a directory")
  for g in groups:
    _check_seed_group(g)
  outs = [
    [
      workdir_outputs(w, split, beam_size=beam_size, length_penalty=length_penalty, step=step)
      for w in g
    ]
    for g in groups
  ]
  flat = [o for g in outs for o in g]
  _check_same_test_set(flat, split)
  first = flat[0]
  unit = first.unit
  config = workdir_lib.read_config(first.workdir)
  try:
    edges = metrics_lib.parse_bucket_edges(
      config.eval.length_buckets if length_buckets is None else length_buckets
    )
  except ValueError as e:
    raise CompareError(f"--length_buckets: {e}") from None
  buckets_given = bool(edges)
  edges = edges or metrics_lib.quantile_bucket_edges(first.lengths)
  b = metrics_lib.bucket_index(first.lengths, edges)
  subsets = [("all", None, None, np.arange(len(first.lengths)))]
  for i in range(int(b.min()), int(b.max()) + 1):
    lo, hi = metrics_lib.bucket_bounds(edges, i)
    subsets.append((metrics_lib.bucket_label(edges, i), lo, hi, np.nonzero(b == i)[0]))

  labels = [_label(g) for g in outs]
  labels = [lab if labels.count(lab) == 1 else f"{lab} #{i + 1}" for i, lab in enumerate(labels)]
  stats = {
    name: [[metrics_lib.sentence_stats(name, o.hypotheses, o.references) for o in g] for g in outs]
    for name in metrics_lib.TEXT_METRICS
  }
  rows = []
  for bucket, lo, hi, idx in subsets:
    boot = metrics_lib.bootstrap_indices(len(idx)) if len(idx) else None
    base: dict[str, dict] = {}
    for gi, g in enumerate(outs):
      row = {
        "model": labels[gi],
        "workdirs": [o.workdir for o in g],
        "steps": [o.step for o in g],
        "bucket": bucket,
        "min_length": lo,
        "max_length": hi,
        "count": int(len(idx)),
      }
      small = len(idx) < metrics_lib.MIN_BUCKET  # a score, but no interval or p
      for name in metrics_lib.TEXT_METRICS:
        if not len(idx):
          row.update({name: None, f"{name}_ci": None, f"{name}_p": None})
          continue
        r = _subset_scores(stats[name][gi], idx, boot, name)
        row[name] = r["score"]
        row[f"{name}_ci"] = None if small else list(metrics_lib.interval(r["resampled"]))
        if gi == 0:
          base[name] = r
        if gi == 0 or small:
          row[f"{name}_p"] = None
        else:
          row[f"{name}_p"] = metrics_lib.paired_p_value(
            r["resampled"], base[name]["resampled"], r["score"] - base[name]["score"]
          )
        if "seed_mean" in r:
          row[f"{name}_seed_mean"], row[f"{name}_seed_std"] = r["seed_mean"], r["seed_std"]
      rows.append(row)

  out = out or os.path.join(first.workdir, "compare")
  info = {
    "split": split,
    "unit": unit,
    "decoding": first.decoding,
    "step": "best" if step == "best" else ("latest" if step is None else step),
    "groups": [[o.workdir for o in g] for g in outs],
    "reused": [o.workdir for o in flat if o.reused],
    "sentences": len(first.references),
    "buckets_given": buckets_given,
    "code": {o.workdir: environment.code_version(o.workdir) for o in flat},
  }
  paths = {
    "md": os.path.join(out, "compare.md"),
    "csv": os.path.join(out, "compare.csv"),
    "png": os.path.join(out, "compare_by_length.png"),
    "svg": os.path.join(out, "compare_by_length.svg"),
  }
  markdown = to_markdown(rows, info, os.path.basename(paths["png"]))
  if len(outs) == 1:
    markdown += (
      "\nNote: one model: there is nothing to compare it with, so no p-values; "
      "give two or more (`--workdirs A B`) for paired-bootstrap p-values.\n"
    )
  if on_markdown is not None:
    on_markdown(markdown)
  series = [(m, [r for r in rows if r["model"] == m and r["bucket"] != "all"]) for m in labels]
  d = first.decoding
  how = "greedy" if d["beam_size"] == 1 else f"beam {d['beam_size']}"
  with writers.uninterrupted():
    os.makedirs(out, exist_ok=True)
    fileio.atomic_write_text(paths["md"], markdown)
    write_csv(paths["csv"], rows, unit)
    plots.save_compare_by_length(
      paths["png"],
      series,
      "bleu",
      unit,
      title=f"BLEU by source length, {split} split ({how})",
      caption=f"bands: 95% bootstrap interval over the {len(first.references)} test sentences "
      f"(B = {metrics_lib.BOOTSTRAP_SAMPLES})"
      + ("; a model of several seeds pools their outputs" if any(len(g) > 1 for g in outs) else ""),
    )
  return {"rows": rows, "paths": paths, "markdown": markdown, "info": info}


def _fmt(v, digits=2) -> str:
  return (
    "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else (f"{v:.{digits}f}")
  )


def _ci(ci) -> str:
  return "–" if not ci else f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _p(p) -> str:
  if p is None:
    return "(baseline)"
  return f"{p:.4f}" if p >= 0.0001 else f"{p:.1e}"


def _seeds(row, name) -> str:
  if f"{name}_seed_mean" not in row:
    return "–"
  return f"{_fmt(row[name + '_seed_mean'])} ± {_fmt(row[name + '_seed_std'])}"


def to_markdown(rows: list[dict], info: dict, png: str) -> str:
  d = info["decoding"]
  how = (
    "greedy search"
    if d["beam_size"] == 1
    else f"beam search, beam {d['beam_size']}, length penalty {d['length_penalty']}"
  )
  sig = "; ".join(f"{k}: `{metrics_lib.signature(k)}`" for k in metrics_lib.TEXT_METRICS)
  lines = [
    f"# Comparison on the {info['split']} split ({info['sentences']} sentences)\n",
    f"Decoding: {how}; checkpoints: {info['step']}. Scores: sacrebleu on the "
    "detokenized hypotheses against the raw reference lines "
    f"({sig}). 95% CI: the 2.5th–97.5th percentiles of "
    f"{metrics_lib.BOOTSTRAP_SAMPLES} bootstrap resamples of the test sentences "
    f"(seed {metrics_lib.BOOTSTRAP_SEED}, sacrebleu's resampling); p: sacrebleu's "
    "paired bootstrap against the first model (1 where no resample tells the two "
    "apart). A model of several seeds pools their outputs; `seeds` is the mean ± "
    "standard deviation of the seeds' own scores (the run-to-run spread, which "
    "the interval does not cover).\n",
    "## Overall\n",
    "| model | BLEU | 95% CI | p | seeds | chrF | 95% CI | p | seeds |",
    "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    if r["bucket"] == "all":
      lines.append(
        f"| {r['model']} | {_fmt(r['bleu'])} | {_ci(r['bleu_ci'])} | "
        f"{_p(r['bleu_p'])} | {_seeds(r, 'bleu')} | {_fmt(r['chrf'])} | "
        f"{_ci(r['chrf_ci'])} | {_p(r['chrf_p'])} | {_seeds(r, 'chrf')} |"
      )
  models = list(dict.fromkeys(r["model"] for r in rows))
  for name, title in (("bleu", "BLEU"), ("chrf", "chrF")):
    lines += [
      "",
      f"## {title} by source length ({info['unit']})\n",
      f"Each cell: {title} [95% CI], p against the first model; a bucket of fewer "
      f"than {metrics_lib.MIN_BUCKET} sentences gets its score and n only. Buckets: "
      + (
        "`length_buckets` as given.\n"
        if info.get("buckets_given")
        else "equal-count buckets at the test set's own source-length quantiles "
        f"(about {metrics_lib.QUANTILE_BUCKETS}; one under {metrics_lib.MIN_BUCKET} "
        "sentences merged into its neighbour).\n"
      ),
      "| source " + info["unit"] + " | n | " + " | ".join(models) + " |",
      "|---|---|" + "---|" * len(models),
    ]
    buckets = list(dict.fromkeys(r["bucket"] for r in rows if r["bucket"] != "all"))
    for bk in buckets:
      cells = []
      for m in models:
        r = next(x for x in rows if x["model"] == m and x["bucket"] == bk)
        if r[name] is not None and r["count"] < metrics_lib.MIN_BUCKET:
          cells.append(f"{_fmt(r[name])} (n < {metrics_lib.MIN_BUCKET}: no CI, no p)")
          continue
        cell = f"{_fmt(r[name])} {_ci(r[name + '_ci'])}"
        if r[name + "_p"] is not None:
          cell += f", p={_p(r[name + '_p'])}"
        cells.append(cell)
      n = next(x["count"] for x in rows if x["bucket"] == bk)
      lines.append(f"| {bk} | {n} | " + " | ".join(cells) + " |")
  lines += ["", f"![BLEU by source length]({png})", ""]
  code = info.get("code") or {}
  if code:
    lines.append(
      "Code: "
      + "; ".join(f"`{w}` commit {v or 'unknown (no git record)'}" for w, v in code.items())
      + ".\n"
    )
  if info["reused"]:
    lines.append(
      "Outputs reused from `eval/` of: " + ", ".join(f"`{w}`" for w in info["reused"]) + ".\n"
    )
  return "\n".join(lines)


def write_csv(path: str, rows: list[dict], unit: str) -> None:
  cols = ["model", "workdirs", "steps", "bucket", f"min_{unit}", f"max_{unit}", "count"]
  for name in metrics_lib.TEXT_METRICS:
    cols += [
      name,
      f"{name}_ci_low",
      f"{name}_ci_high",
      f"{name}_p",
      f"{name}_seed_mean",
      f"{name}_seed_std",
    ]
  with fileio.atomic_open(path, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(cols)
    for r in rows:
      flat = {
        **r,
        f"min_{unit}": r["min_length"],
        f"max_{unit}": r["max_length"],
        "workdirs": " ".join(r["workdirs"]),
        "steps": " ".join(str(s) for s in r["steps"]),
      }
      for name in metrics_lib.TEXT_METRICS:
        ci = r.get(f"{name}_ci") or [None, None]
        flat[f"{name}_ci_low"], flat[f"{name}_ci_high"] = ci
      w.writerow(
        [
          ""
          if flat.get(c) is None
          else (f"{flat[c]:.6g}" if isinstance(flat[c], float) else flat[c])
          for c in cols
        ]
      )
