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
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention_jax import config as config_lib
from attention_jax import decoding
from attention_jax import metrics as metrics_lib
from attention_jax import objectives
from attention_jax import plots
from attention_jax.data.vocab import EOS, PAD

SPLITS = ("eval", "test")
CSV_COLUMNS = ("bucket", "min_length", "max_length", "count", "bleu", "chrf",
               "sequence_accuracy", "token_accuracy", "perplexity", "loss")


class EvalError(RuntimeError):
  """A workdir or input cannot be evaluated. The message is one line."""


def _one_line(e: BaseException) -> str:
  text = " ".join(str(e).split())
  return text[:300] + ("…" if len(text) > 300 else "")


def load(workdir: str, step: int | None = None):
  """``train.load_model`` with every failure as one :class:`EvalError` line:
  no ``config.json``, an invalid config, no checkpoint, or a checkpoint that
  does not fit the model the config describes."""
  from attention_jax import train
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise EvalError(f"{path} not found: is {workdir} a workdir?")
  try:
    with open(path, encoding="utf-8") as f:
      config = config_lib.from_json(f.read())
    config_lib.validate(config)
  except (ValueError, config_lib.ConfigError) as e:
    raise EvalError(f"{path}: {_one_line(e)}") from None
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt_dir) or not any(
      name.isdigit() for name in os.listdir(ckpt_dir)):
    raise EvalError(f"no checkpoint in {ckpt_dir}: train first with "
                    f"experiments.run --workdir {workdir}")
  try:
    return train.load_model(workdir, step)
  except FileNotFoundError as e:
    raise EvalError(_one_line(e)) from None
  except Exception as e:  # orbax: structure or shape mismatch
    raise EvalError(
        f"the checkpoint in {ckpt_dir} does not fit the model in {path} "
        f"(model.name={config.model.name!r}, hidden_size="
        f"{config.model.hidden_size}); was it written by another model? "
        f"({type(e).__name__}: {_one_line(e)})") from None


def with_decoding(config, beam_size: int | None = None,
                  length_penalty: float | None = None):
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


def collect(run, params, config, eval_set: dict[str, np.ndarray],
            batch_size: int | None = None) -> metrics_lib.ExampleRecords:
  """Per-example records of the whole set, decoded as ``config.eval`` says."""
  from attention_jax import train
  objective = objectives.get(run.task.objective, run.task, config)
  if not hasattr(objective, "records"):
    raise EvalError(f"task {config.data.task!r} (objective "
                    f"{run.task.objective!r}) has no sequence-to-sequence "
                    "evaluation")

  class _Collect:   # train.evaluate's batching; keep every per-example output
    eval_batch = staticmethod(objective.eval_batch)

    @staticmethod
    def finalize(sums, each):
      del sums
      return each

  step = jax.jit(train.make_eval_step(run.graphdef, _Collect, config))
  each = train.evaluate(step, _Collect, params, eval_set,
                        batch_size or config.eval.batch_size)
  return objective.records(each)


def bucket_edges(config, lengths: np.ndarray) -> list[int]:
  edges = metrics_lib.parse_bucket_edges(config.eval.length_buckets)
  return edges or metrics_lib.auto_bucket_edges(lengths)


def report(records: metrics_lib.ExampleRecords, config, *, split: str,
           step: int | None, workdir: str) -> dict[str, Any]:
  """The JSON-ready report: settings, ``overall`` and ``by_length`` (and
  ``by_unk`` when some source contains UNK)."""
  edges = bucket_edges(config, records.src_length)
  e = config.eval
  out = {
      "workdir": os.path.abspath(workdir), "split": split, "step": step,
      "model": config.model.name, "task": config.data.task,
      "decoding": {"beam_size": e.beam_size, "length_penalty": e.length_penalty,
                   "max_length_a": e.max_length_a, "max_length_b": e.max_length_b},
      "length_buckets": edges,
      "overall": metrics_lib.summarize(records),
      "by_length": metrics_lib.summarize_by_length(records, edges),
  }
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
  return x


def write_report(rep: dict[str, Any], out_dir: str) -> dict[str, str]:
  """Writes ``S.json``, ``S_by_length.csv`` and ``S_by_length.png``."""
  os.makedirs(out_dir, exist_ok=True)
  split = rep["split"]
  paths = {"json": os.path.join(out_dir, f"{split}.json"),
           "csv": os.path.join(out_dir, f"{split}_by_length.csv"),
           "png": os.path.join(out_dir, f"{split}_by_length.png")}
  tmp = paths["json"] + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(_jsonable(rep), f, indent=2)
    f.write("\n")
  os.replace(tmp, paths["json"])
  tmp = paths["csv"] + ".tmp"
  with open(tmp, "w", encoding="utf-8", newline="") as f:
    w = csv.writer(f)
    w.writerow(CSV_COLUMNS)
    for row in rep["by_length"]:
      w.writerow(["" if row.get(k) is None else
                  (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                  for k in CSV_COLUMNS])
  os.replace(tmp, paths["csv"])
  d = rep["decoding"]
  how = "greedy" if d["beam_size"] == 1 else f"beam {d['beam_size']}"
  plots.save_metric_by_length(
      paths["png"], rep["by_length"],
      title=f"{rep['model']} on {rep['task']} ({split}, step {rep['step']}, {how})")
  return paths


def evaluate_workdir(workdir: str, split: str = "test", *,
                     beam_size: int | None = None,
                     length_penalty: float | None = None,
                     step: int | None = None) -> tuple[dict[str, Any], dict[str, str]]:
  """Loads the latest checkpoint of ``workdir``, evaluates ``split``, writes
  ``workdir/eval/``. Returns (report, paths)."""
  if split not in SPLITS:
    raise EvalError(f"--split {split!r}: allowed: {', '.join(SPLITS)}")
  model, config, run = load(workdir, step)
  del model
  config = with_decoding(config, beam_size, length_penalty)
  try:
    eval_set = run.task.eval_set(split)
  except (KeyError, ValueError, FileNotFoundError) as e:
    raise EvalError(f"task {config.data.task!r} has no split {split!r}: "
                    f"{_one_line(e)}") from None
  records = collect(run, run.state.params, config, eval_set)
  rep = report(records, config, split=split, step=int(run.state.step),
               workdir=workdir)
  return rep, write_report(rep, os.path.join(workdir, "eval"))


# --------------------------------------------------------------------------
# Translation


def encode_text(task, text: str) -> list[int]:
  """Source ids of ``text``: ``task.encode(text, "src")`` when the task has
  it (files/TFDS tasks: their tokenizer), else whitespace-separated tokens of
  the source vocabulary — or its characters when the vocabulary is of
  characters (e.g. ``addition``: "12+34")."""
  fn = getattr(task, "encode", None)
  if fn is not None:
    return list(fn(text, "src"))
  vocab = task.src_vocab
  words = text.split()
  known = set(vocab.tokens)
  if not all(w in known for w in words):
    chars = [ch for ch in text if not ch.isspace()]
    if chars and all(ch in known for ch in chars):
      return vocab.encode(chars)
  return vocab.encode(words)


def token_strings(vocab, ids: Sequence[int]) -> list[str]:
  return [vocab.tokens[i] if 0 <= i < len(vocab) else "<unk>" for i in ids]


def translate(model, config, task, texts: Sequence[str],
              beam_size: int | None = None) -> list[dict[str, Any]]:
  """Decodes each text. Returns per text: ``source`` (token strings),
  ``output`` (token strings, EOS included if produced), ``text`` (the
  detokenized translation), ``score``, ``attention`` ([len(output),
  len(source)] numpy, or None for a model without attention)."""
  config = with_decoding(config, beam_size)
  ids = [encode_text(task, t) for t in texts]
  for text, row in zip(texts, ids):
    if not row:
      raise EvalError(f"input {text!r} has no tokens")
  S = max(len(r) for r in ids)
  src = np.full((len(ids), S), PAD, np.int32)
  for i, r in enumerate(ids):
    src[i, :len(r)] = r
  graphdef, params = nnx.split(model)

  @jax.jit
  def run(params, src):
    return decoding.decode_from_config(nnx.merge(graphdef, params), src, config)

  hyp = jax.device_get(run(params, jnp.asarray(src)))
  out = []
  for i, r in enumerate(ids):
    toks = np.asarray(hyp.tokens[i])
    n = int(np.argmax(toks == EOS)) + 1 if (toks == EOS).any() else int(
        (toks != PAD).sum())
    att = None if hyp.attention is None else np.asarray(
        hyp.attention[i, :n, :len(r)])
    out.append({"source": token_strings(task.src_vocab, r),
                "output": token_strings(task.tgt_vocab, toks[:n].tolist()),
                "text": metrics_lib.detokenize(task, toks, "tgt"),
                "score": float(hyp.scores[i]), "attention": att})
  return out
