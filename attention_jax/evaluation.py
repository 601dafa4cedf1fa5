"""Evaluate a trained workdir, and translate text with attention heatmaps.

The library behind ``experiments.evaluate`` and ``experiments.translate``. It
decodes with the same objective code as training-time evaluation
(``objectives.Seq2Seq`` bound to the task and ``eval.*`` config), so a number
printed during training and one written here agree for the same checkpoint
and decoding settings.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention_jax import decoding, environment, objectives, plots
from attention_jax import metrics as metrics_lib
from attention_jax import step as step_lib
from attention_jax import workdir as workdir_lib
from attention_jax.data.vocab import EOS, PAD
from attention_jax.errors import EvalError, one_line

SPLITS = ("eval", "test")


def with_decoding(config, beam_size: int | None = None, length_penalty: float | None = None):
  """A copy of ``config`` with the decoding settings overridden."""
  config = copy.deepcopy(config)
  if beam_size is not None:
    if beam_size < 1:
      raise EvalError(f"--beam must be >= 1, got {beam_size}")
    config.eval.beam_size = beam_size
  if length_penalty is not None:
    if length_penalty < 0:
      raise EvalError(f"--length_penalty must be >= 0, got {length_penalty}")
    config.eval.length_penalty = length_penalty
  return config


def collect(
  run, params, config, split: str = "eval", task=None, batch_size: int | None = None
) -> metrics_lib.ExampleRecords:
  """Per-example records of ``split`` of ``task`` (default: the run's),
  decoded as ``config.eval`` says, scored against the split's raw references."""
  task = run.task if task is None else task
  objective = objectives.get(task.objective, task, config, split)
  if not hasattr(objective, "records"):
    raise EvalError(
      f"task {config.data.task!r} (objective "
      f"{task.objective!r}) has no sequence-to-sequence "
      "evaluation"
    )

  step = jax.jit(step_lib.make_eval_step(run.graphdef, objective, config))
  _, each = step_lib.run_eval(
    step, params, task.eval_set(split), batch_size or config.eval.batch_size
  )
  return objective.records(each)


def bucket_edges(config, lengths: np.ndarray) -> list[int]:
  edges = metrics_lib.parse_bucket_edges(config.eval.length_buckets)
  return edges or metrics_lib.auto_bucket_edges(lengths)


ALIGNMENT_COLUMNS = (
  "alignment_accuracy",
  "gold_attention_mass",
  "aligned_tokens",
  "unaligned_tokens",
)


def csv_columns(unit: str, alignment: bool = False) -> tuple[str, ...]:
  """Columns of ``S_by_length.csv``; the bucket bounds name the length unit;
  with ``alignment``, the attention-vs-gold columns."""
  return (
    "bucket",
    f"min_{unit}",
    f"max_{unit}",
    "count",
    "bleu",
    "bleu_ci_low",
    "bleu_ci_high",
    "chrf",
    "chrf_ci_low",
    "chrf_ci_high",
    "sequence_accuracy",
    "token_accuracy",
    "perplexity",
    "loss",
    *(ALIGNMENT_COLUMNS if alignment else ()),
  )


def alignment_note(model_name: str) -> str:
  """What the alignment scores of ``model_name`` are computed on, in words."""
  which = (
    "the last decoder layer's cross-attention averaged over heads "
    "(every layer and head: alignment_by_layer_head)"
    if model_name == "transformer"
    else "the attention weights"
  )
  return (
    f"{which}, teacher-forced on the reference, against the task's gold "
    "alignment; alignment_accuracy = share of aligned target tokens whose "
    "largest weight is on the gold source token, gold_attention_mass = mean "
    "weight on it; target tokens without a unique gold source (a repeated "
    "symbol of sort, a function word of reorder) are left out and counted "
    "(unaligned_tokens); EOS is not a token to align"
  )


def alignment_by_layer_head(run, params, config, split: str, task=None) -> dict[str, Any] | None:
  """Alignment scores of every decoder layer and head (models with
  ``cross_attention_weights``, i.e. the Transformer) on ``split``, plus each
  layer's head average; None for other models or tasks without alignment."""
  task = run.task if task is None else task
  data = task.eval_set(split)
  model = run.model
  if "align" not in data or not hasattr(model, "cross_attention_weights"):
    return None
  graphdef = run.graphdef

  def sums(params, batch):
    m = step_lib.merge_for_compute(graphdef, params, config)
    w = m.cross_attention_weights(batch["src"], batch["tgt_in"])  # (B, L, N, T, S)
    w = jnp.concatenate([w, w.mean(axis=2, keepdims=True)], axis=2)  # + head mean
    out = metrics_lib.alignment_sums(w, batch["align"][:, None, None, :])
    return {f"each_{k}": v for k, v in out.items()}  # (B, L, N+1)

  _, each = step_lib.run_eval(jax.jit(sums), params, data, config.eval.batch_size)
  hits, mass, aligned = (each[f"each_{k}"].sum(0) for k in ("hits", "mass", "aligned"))
  acc = (hits / np.maximum(aligned, 1)).round(6)
  gold = (mass / np.maximum(aligned, 1)).round(6)
  return {
    "layers": int(acc.shape[0]),
    "heads": int(acc.shape[1] - 1),
    "alignment_accuracy": acc[:, :-1].tolist(),
    "gold_attention_mass": gold[:, :-1].tolist(),
    "head_mean_alignment_accuracy": acc[:, -1].tolist(),
    "head_mean_gold_attention_mass": gold[:, -1].tolist(),
  }


def scoring(task, config, split: str) -> dict[str, Any]:
  """What every BLEU/chrF of ``split`` is computed on, in words."""
  text = hasattr(task, "tokenizer")
  nfc = getattr(task, "normalization", "none") == "NFC"
  if text:
    refs = (
      f"the raw target lines of the {split} split as in the file or "
      "dataset (only line ends removed; never truncated)"
    )
    hyps = (
      f"decoded ids detokenized by the {config.data.tokenizer!r} "
      "tokenizer; an unknown token is written <unk>"
    )
  else:
    refs = "the generated target sequences, whole"
    joined = "concatenated" if getattr(task, "separator", " ") == "" else ("joined by spaces")
    hyps = f"decoded symbols {joined}"
  unit = getattr(task, "length_unit", "tokens")
  return {
    "references": refs + (", in Unicode NFC" if nfc else ""),
    "hypotheses": hyps + (", in Unicode NFC" if nfc else ""),
    "normalization": "NFC (hypotheses and references)" if nfc else "none",
    "length_unit": unit,
    "length": (
      f"source length in {unit}"
      + (" (whitespace-separated) of the raw source line" if text else "")
    ),
    "signatures": {name: metrics_lib.signature(name) for name in metrics_lib.TEXT_METRICS},
    "intervals": (
      f"95% bootstrap intervals [low, high]: the 2.5th and 97.5th "
      f"percentiles of {metrics_lib.BOOTSTRAP_SAMPLES} resamples of "
      f"the sentences (sacrebleu's resampling, seed "
      f"{metrics_lib.BOOTSTRAP_SEED}); they cover the sampling of "
      "test sentences only, not of training runs"
    ),
  }


def report(
  records: metrics_lib.ExampleRecords,
  config,
  *,
  split: str,
  step: int | None,
  workdir: str,
  task=None,
) -> dict[str, Any]:
  """The JSON-ready report: settings, what the scores are computed on,
  ``overall`` and ``by_length`` (with 95% intervals of BLEU and chrF), how the
  split is held out, and ``by_unk`` when some source contains UNK."""
  edges = bucket_edges(config, records.src_length)
  e = config.eval
  out = {
    "workdir": os.path.abspath(workdir),
    "code": environment.code_version(workdir),  # git commit (env.json), or None
    "split": split,
    "step": step,
    "model": config.model.name,
    "task": config.data.task,
    "decoding": {
      "beam_size": e.beam_size,
      "length_penalty": e.length_penalty,
      "max_length_a": e.max_length_a,
      "max_length_b": e.max_length_b,
    },
    "scoring": scoring(task, config, split) if task is not None else None,
    "length_unit": getattr(task, "length_unit", "tokens"),
    "length_buckets": edges,
    "overall": metrics_lib.summarize(records, intervals=True),
    "by_length": metrics_lib.summarize_by_length(records, edges, intervals=True),
  }
  if records.alignment is not None:
    out["alignment"] = alignment_note(config.model.name)
  if task is not None and hasattr(task, "held_out"):
    out["held_out"] = task.held_out()
  by_unk = metrics_lib.summarize_by_unk(records)
  if by_unk is not None:
    out["by_unk"] = by_unk
  return out


def _jsonable(x):
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.generic):
    return _jsonable(x.item())
  return x


def _write_atomic(path: str, write) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8", newline="") as f:
    write(f)
  os.replace(tmp, path)


def _one_per_line(texts: Sequence[str]) -> str:
  """Text lines as sacrebleu reads them: a line feed inside one is a space."""
  return "".join(t.replace("\n", " ") + "\n" for t in texts)


def write_report(
  rep: dict[str, Any],
  out_dir: str,
  records: metrics_lib.ExampleRecords | None = None,
  sources: Sequence[str] | None = None,
) -> dict[str, str]:
  """Writes ``S.json``, ``S_by_length.csv``, ``S_by_length.png`` and, given
  the records, the scored text: ``S.hyp.txt`` and ``S.ref.txt`` (line by
  line, for ``sacrebleu S.ref.txt -i S.hyp.txt``) and ``S_examples.jsonl``
  (per example: source, hypothesis, reference, source length, exact match)."""
  os.makedirs(out_dir, exist_ok=True)
  split = rep["split"]
  unit = rep.get("length_unit", "tokens")
  paths = {
    "json": os.path.join(out_dir, f"{split}.json"),
    "csv": os.path.join(out_dir, f"{split}_by_length.csv"),
    "png": os.path.join(out_dir, f"{split}_by_length.png"),
  }
  if records is not None:
    paths.update(
      hyp=os.path.join(out_dir, f"{split}.hyp.txt"),
      ref=os.path.join(out_dir, f"{split}.ref.txt"),
      examples=os.path.join(out_dir, f"{split}_examples.jsonl"),
    )
    _write_atomic(paths["hyp"], lambda f: f.write(_one_per_line(records.hypotheses)))
    _write_atomic(paths["ref"], lambda f: f.write(_one_per_line(records.references)))
    srcs = list(sources) if sources is not None else [None] * len(records.hypotheses)

    def examples(f):
      for i, (src, hyp, ref) in enumerate(
        zip(srcs, records.hypotheses, records.references, strict=True)
      ):
        f.write(
          json.dumps(
            {
              "row": i,
              "source": src,
              "hypothesis": hyp,
              "reference": ref,
              "source_length": int(records.src_length[i]),
              "exact": bool(records.exact[i]),
            },
            ensure_ascii=False,
          )
          + "\n"
        )

    _write_atomic(paths["examples"], examples)

  def write_json(f):
    json.dump(_jsonable(rep), f, indent=2, ensure_ascii=False)
    f.write("\n")

  _write_atomic(paths["json"], write_json)

  columns = csv_columns(unit, alignment="alignment" in rep)

  def cell(row, col):
    key = {f"min_{unit}": "min_length", f"max_{unit}": "max_length"}.get(col, col)
    if col.endswith(("_ci_low", "_ci_high")):
      ci = row.get(col.rsplit("_ci_", 1)[0] + "_ci")
      v = None if ci is None else ci[0 if col.endswith("low") else 1]
    else:
      v = row.get(key)
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
      return ""
    return f"{v:.6g}" if isinstance(v, float) else v

  def write_csv(f):
    w = csv.writer(f)
    w.writerow(columns)
    for row in rep["by_length"]:
      w.writerow([cell(row, c) for c in columns])

  _write_atomic(paths["csv"], write_csv)
  d = rep["decoding"]
  how = "greedy" if d["beam_size"] == 1 else f"beam {d['beam_size']}"
  plots.save_metric_by_length(
    paths["png"],
    rep["by_length"],
    unit=unit,
    title=f"{rep['model']} on {rep['task']} ({split}, step {rep['step']}, {how})",
  )
  return paths


def _with_ci(row: dict, name: str) -> str:
  v, ci = row.get(name), row.get(f"{name}_ci")
  if v is None:
    return "-"
  text = f"{v:.2f}"
  if ci is not None and None not in ci:
    text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
  return text


def format_report(rep: dict[str, Any]) -> str:
  """The lines ``experiments.evaluate`` prints: overall metrics with 95%
  intervals, what they are computed on, and one line per length bucket."""
  o, d = rep["overall"], rep["decoding"]
  how = "greedy" if d["beam_size"] == 1 else f"beam {d['beam_size']}"
  lines = [
    f"{rep['split']} at step {rep['step']} ({how}): count {o['count']}  "
    + "  ".join(
      f"{k} {o[k]:.4f}"
      for k in ("loss", "perplexity", "token_accuracy", "sequence_accuracy")
      if o.get(k) is not None
    )
    + f"  bleu {_with_ci(o, 'bleu')}  chrf {_with_ci(o, 'chrf')}",
    f"  code: commit {rep.get('code') or 'unknown (no git record in env.json)'}",
  ]
  sc = rep.get("scoring")
  if sc:
    lines.append(f"  computed on: hypotheses = {sc['hypotheses']}; references = {sc['references']}")
    lines.append(
      "  signatures: "
      + "; ".join(f"{k} {v}" for k, v in sc["signatures"].items())
      + "; [low, high] = 95% bootstrap interval"
    )
  if o.get("alignment_accuracy") is not None:
    lines.append(
      f"  alignment (teacher-forced attention vs gold): alignment_accuracy "
      f"{o['alignment_accuracy']:.4f}  gold_attention_mass "
      f"{o['gold_attention_mass']:.4f} over {o['aligned_tokens']} aligned "
      f"target tokens ({o['unaligned_tokens']} without a unique gold "
      "source left out)"
    )
  heads = rep.get("alignment_by_layer_head")
  if heads:
    lines.append(
      "  alignment_accuracy by decoder layer (head mean; heads): "
      + "; ".join(
        f"layer {layer + 1} {m:.3f} ({', '.join(f'{a:.2f}' for a in accs)})"
        for layer, (m, accs) in enumerate(
          zip(heads["head_mean_alignment_accuracy"], heads["alignment_accuracy"], strict=True)
        )
      )
    )
  unit = rep.get("length_unit", "tokens")
  for row in rep["by_length"]:
    acc = "-" if row["sequence_accuracy"] is None else f"{row['sequence_accuracy']:.3f}"
    align = (
      ""
      if row.get("alignment_accuracy") is None
      else f"  alignment_accuracy {row['alignment_accuracy']:.3f}"
    )
    lines.append(
      f"  source {unit} {row['bucket']:>7}: n={row['count']:<5d} "
      f"bleu {_with_ci(row, 'bleu'):>22}  sequence_accuracy {acc}{align}"
    )
  return "\n".join(lines)


def evaluate_workdir(
  workdir: str,
  split: str = "test",
  *,
  beam_size: int | None = None,
  length_penalty: float | None = None,
  step: int | str | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
  """Loads a checkpoint of ``workdir`` (``step``: a number, ``"best"`` for the
  best dev BLEU, None for the latest), evaluates ``split``, writes
  ``workdir/eval/``. Returns (report, paths)."""
  if split not in SPLITS:
    raise EvalError(f"--split {split!r}: allowed: {', '.join(SPLITS)}")
  run = workdir_lib.load(workdir, step)
  config = with_decoding(run.config, beam_size, length_penalty)
  try:
    run.task.eval_set(split)
  except (KeyError, ValueError, FileNotFoundError) as e:
    raise EvalError(f"task {config.data.task!r} has no split {split!r}: {one_line(e)}") from None
  records = collect(run, run.state.params, config, split)
  rep = report(
    records, config, split=split, step=int(run.state.step), workdir=workdir, task=run.task
  )
  heads = alignment_by_layer_head(run, run.state.params, config, split)
  if heads is not None:
    rep["alignment_by_layer_head"] = heads
  sources = run.task.eval_sources(split) if hasattr(run.task, "eval_sources") else None
  return rep, write_report(rep, os.path.join(workdir, "eval"), records, sources)


# --------------------------------------------------------------------------
# Translation


def encode_text(task, text: str) -> tuple[list[int], list[str]]:
  """Source ids of ``text`` and the parts of it that became ``<unk>``.

  Real text (files/TFDS tasks): the task's tokenizer, ``task.encode``;
  unknown parts are kept as ``<unk>`` and listed. Synthetic tasks: the
  vocabulary's symbols, whitespace-separated — or characters, spaces ignored,
  when the task's text is characters (``addition``: "12+34"); a symbol
  outside the vocabulary is an :class:`EvalError` naming it and the
  vocabulary (the model has never seen it: there is no ``<unk>`` to map to).
  """
  if hasattr(task, "unknown"):
    return list(task.encode(text, "src")), task.unknown(text, "src")
  vocab = task.src_vocab
  chars = getattr(task, "separator", " ") == ""
  tokens = [c for c in text if not c.isspace()] if chars else text.split()
  known = set(vocab.tokens[4:])
  unknown = list(dict.fromkeys(t for t in tokens if t not in known))
  if unknown:
    symbols = "" if chars else " "
    raise EvalError(
      f"input {text!r}: unknown {'characters' if chars else 'tokens'} "
      + ", ".join(repr(t) for t in unknown)
      + f"; the source vocabulary of "
      f"data.task {getattr(task, 'name', '?')!r} is {symbols.join(vocab.tokens[4:])!r}"
      + ("" if chars else " (symbols separated by spaces)")
    )
  return vocab.encode(tokens), []


def longest_training_source(task, config) -> tuple[int, str, str]:
  """(length, unit, config key) of the longest source the model was trained
  on, in the units ``encode_text`` counts."""
  d = config.data
  if hasattr(task, "tokenizer"):
    return d.max_length, f"{d.tokenizer} tokens", "data.max_length"
  if d.task == "addition":
    return (
      2 * d.train_max_length + 1,
      "characters",
      (f"two operands of data.train_max_length={d.train_max_length} digits"),
    )
  return d.train_max_length, getattr(task, "length_unit", "tokens"), ("data.train_max_length")


def token_strings(vocab, ids: Sequence[int]) -> list[str]:
  return [vocab.tokens[i] if 0 <= i < len(vocab) else "<unk>" for i in ids]


def translate(
  model, config, task, texts: Sequence[str], beam_size: int | None = None
) -> list[dict[str, Any]]:
  """Decodes each text. Returns per text: ``source`` (token strings),
  ``output`` (token strings, EOS included if produced), ``text`` (the
  detokenized translation), ``score``, ``attention`` ([len(output),
  len(source)] numpy, or None for a model without attention), ``unknown``
  (parts of the text that became ``<unk>``), ``tokens`` (source tokens),
  ``gold`` (the task's gold alignment of the reference target: per target
  position the source position, −1 for none; None when the task does not
  know it for typed text) and ``warning`` (a line when the input is longer
  than the training sources, else None).

  Real text longer than ``data.max_length`` tokens is cut to it, as
  evaluation cuts its sources, so ``translate --file`` of a split's sources
  prints what ``evaluate`` scores. Inputs are decoded in batches of
  ``eval.batch_size`` (padded, like evaluation's batches).
  """
  config = with_decoding(config, beam_size)
  limit, unit, key = longest_training_source(task, config)
  cut = hasattr(task, "tokenizer")
  ids, extra = [], []
  for i, text in enumerate(texts, 1):
    row, unknown = encode_text(task, text)
    if not row:
      raise EvalError(f"input {text!r} has no tokens")
    warning = None
    if len(row) > limit:
      warning = (
        f"input {i} has {len(row)} source {unit.split()[-1]}, more than "
        f"the longest training source ({limit} {unit}, {key})"
        + (f": only its first {limit} are translated" if cut else "")
      )
      if cut:
        row = row[:limit]
    ids.append(row)
    gold = task.gold_alignment(row) if hasattr(task, "gold_alignment") else None
    extra.append({"unknown": unknown, "tokens": len(row), "warning": warning, "gold": gold})
  S = max(len(r) for r in ids)
  B = config.eval.batch_size
  graphdef, params = nnx.split(model)

  @jax.jit
  def run(params, src):
    return decoding.decode_from_config(nnx.merge(graphdef, params), src, config)

  out = []
  for start in range(0, len(ids), B):
    chunk = ids[start : start + B]
    src = np.full((B, S), PAD, np.int32)  # all-PAD rows fill the last batch
    for i, r in enumerate(chunk):
      src[i, : len(r)] = r
    hyp = jax.device_get(run(params, jnp.asarray(src)))
    for i, r in enumerate(chunk):
      toks = np.asarray(hyp.tokens[i])
      n = int(np.argmax(toks == EOS)) + 1 if (toks == EOS).any() else int((toks != PAD).sum())
      att = None if hyp.attention is None else np.asarray(hyp.attention[i, :n, : len(r)])
      out.append(
        {
          "source": token_strings(task.src_vocab, r),
          "output": token_strings(task.tgt_vocab, toks[:n].tolist()),
          "text": metrics_lib.detokenize(task, toks, "tgt"),
          "score": float(hyp.scores[i]),
          "attention": att,
          **extra[start + i],
        }
      )
  return out
