"""BLEU/chrF against sacrebleu's command line, buckets, heatmaps, evaluate CLI."""

import json
import os
import shutil
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import ROOT, tiny_config

from attention_jax import evaluation, metrics, plots, train
from attention_jax import workdir as workdir_lib
from attention_jax.errors import WorkdirError

HYPS = [
  "the cat sat on the mat .",
  "a quick brown fox jumps",
  "hello world",
  "it is raining today , isn't it ?",
  "one two three four five six",
]
REFS = [
  "the cat sat on a mat .",
  "the quick brown fox jumped",
  "hello , world !",
  "it rains today , doesn't it ?",
  "one two three four five six",
]


def _sacrebleu_cli(tmp_path, metric):
  ref, hyp = tmp_path / "ref.txt", tmp_path / "hyp.txt"
  ref.write_text("\n".join(REFS) + "\n", encoding="utf-8")
  hyp.write_text("\n".join(HYPS) + "\n", encoding="utf-8")
  exe = os.path.join(os.path.dirname(sys.executable), "sacrebleu")
  out = subprocess.run(
    [exe, str(ref), "-i", str(hyp), "-m", metric, "-b", "-w", "4"],
    capture_output=True,
    text=True,
    check=True,
  )
  return float(out.stdout.strip())


def test_bleu_and_chrf_equal_sacrebleu_command_line(tmp_path):
  bleu = metrics.corpus_bleu(HYPS, REFS)
  assert bleu == pytest.approx(_sacrebleu_cli(tmp_path, "bleu"), abs=1e-4)
  chrf = metrics.corpus_chrf(HYPS, REFS)
  assert chrf == pytest.approx(_sacrebleu_cli(tmp_path, "chrf"), abs=1e-4)
  assert 20 < bleu < 80 and metrics.corpus_bleu(REFS, REFS) == pytest.approx(100.0)


def test_buckets_and_summaries():
  assert metrics.parse_bucket_edges("10,20,30") == [10, 20, 30]
  for bad in ("10,5", "a,b", "0,3"):
    with pytest.raises(ValueError, match="length buckets"):
      metrics.parse_bucket_edges(bad)
  assert metrics.auto_bucket_edges(np.array([1, 7])) == list(range(1, 8))
  assert metrics.auto_bucket_edges(np.array([3, 30])) == [5, 10, 15, 20, 25, 30]


def test_quantile_buckets_equal_counts_and_merge_below_30():
  rng = np.random.default_rng(0)
  even = rng.integers(1, 41, size=1000)
  edges = metrics.quantile_bucket_edges(even)
  counts = np.bincount(metrics.bucket_index(even, edges))
  assert len(counts) == metrics.QUANTILE_BUCKETS and counts.min() > 150  # ~200 each
  # The case: 498 short sentences, 5, 4 and 3 long ones.
  skew = np.concatenate([rng.integers(3, 11, 498), [15] * 5, [25] * 4, [45] * 3])
  edges = metrics.quantile_bucket_edges(skew)
  counts = np.bincount(metrics.bucket_index(skew, edges))
  assert counts.sum() == len(skew) and counts.min() >= metrics.MIN_BUCKET
  assert metrics.bucket_index(np.array([45]), edges)[0] == len(counts) - 1  # the tail merged
  assert metrics.quantile_bucket_edges(np.array([5] * 20 + [50] * 5)) == []  # < 30 in all
  assert metrics.quantile_bucket_edges(np.array([], np.int64)) == []
  # A small bucket in the middle joins its smaller neighbour.
  mid = np.concatenate([[2] * 100, [5] * 10, [8] * 40])
  edges = metrics.quantile_bucket_edges(mid, buckets=3)
  assert np.bincount(metrics.bucket_index(mid, edges)).tolist() in ([100, 50], [110, 40])
  edges = [2, 4]
  assert [metrics.bucket_label(edges, i) for i in range(3)] == ["1-2", "3-4", "5+"]
  n = 5
  r = metrics.ExampleRecords(
    src_length=np.array([1, 2, 3, 5, 6]),
    loss=np.array([1.0, 2, 3, 4, 5]),
    tokens=np.array([2.0, 2, 2, 2, 2]),
    correct=np.array([2.0, 1, 0, 2, 2]),
    exact=np.array([True, False, False, True, True]),
    hypotheses=HYPS[:n],
    references=REFS[:n],
    src_has_unk=np.array([False, True, False, False, False]),
  )
  rows = metrics.summarize_by_length(r, edges)
  assert [row["count"] for row in rows] == [2, 1, 2]
  assert [row["sequence_accuracy"] for row in rows] == [0.5, 0.0, 1.0]
  assert rows[0]["loss"] == pytest.approx(3.0 / 4)
  assert rows[0]["perplexity"] == pytest.approx(np.exp(0.75))
  assert rows[0]["token_accuracy"] == pytest.approx(3.0 / 4)
  assert rows[1]["bleu"] == pytest.approx(metrics.corpus_bleu(HYPS[2:3], REFS[2:3]))
  rows = metrics.summarize_by_length(r, [2, 4, 8, 10])
  assert rows[-1] == {
    "bucket": "9-10",
    "min_length": 9,
    "max_length": 10,
    "count": 0,
    "loss": None,
    "perplexity": None,
    "token_accuracy": None,
    "sequence_accuracy": None,
    "bleu": None,
    "chrf": None,
  }
  unk = metrics.summarize_by_unk(r)
  assert unk["src_with_unk"]["count"] == 1 and unk["src_without_unk"]["count"] == 4
  r.src_has_unk[:] = False
  assert metrics.summarize_by_unk(r) is None


def test_heatmap_is_png_with_token_labels(tmp_path):
  src = ["le", "chat", "noir", "dort"]
  out = ["the", "black", "cat", "sleeps", "</s>"]
  w = np.random.default_rng(0).dirichlet(np.ones(4), size=5)
  fig = plots.attention_figure(w, src, out)
  ax = fig.axes[0]
  assert [t.get_text() for t in ax.get_xticklabels()] == src
  assert [t.get_text() for t in ax.get_yticklabels()] == out
  np.testing.assert_allclose(ax.images[0].get_array(), w, rtol=1e-6)
  path = plots.save_attention_heatmap(str(tmp_path / "a.png"), w, src, out)
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  img = mpimg.imread(path)
  assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
  with pytest.raises(ValueError, match="attention is 5x4 but there are 3 output"):
    plots.attention_figure(w, src, out[:3])


# --------------------------------------------------------------------------
# A trained tiny workdir, evaluated in-process and through the command line.


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("evalrun"))
  config = tiny_config(
    **{
      "train.learning_rate": 1e-2,
      "train.steps": 20,
      "eval.every_steps": 20,
      "data.eval_examples": 40,
      "eval.length_buckets": "2,4",
    }
  )
  metrics_row = train.train_and_evaluate(config, d)
  return d, config, metrics_row


def _cli(module, *args):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run(
    [sys.executable, "-m", f"experiments.{module}", *args],
    capture_output=True,
    text=True,
    cwd=ROOT,
    env=env,
  )


def test_training_eval_reports_bleu_and_matches_evaluate(workdir):
  d, config, last = workdir
  assert {"bleu", "sequence_accuracy", "token_accuracy", "perplexity"} <= set(last)
  rep, paths = evaluation.evaluate_workdir(d, "eval")
  o = rep["overall"]
  # the same decoding code and checkpoint: the same numbers
  for k in ("bleu", "sequence_accuracy", "token_accuracy", "loss"):
    assert o[k] == pytest.approx(last[k], rel=1e-5, abs=1e-6)
  assert o["count"] == 40 == sum(r["count"] for r in rep["by_length"])
  assert [r["bucket"] for r in rep["by_length"]] == ["1-2", "3-4", "5+"]
  with open(paths["json"]) as f:
    assert json.load(f)["overall"]["count"] == 40
  with open(paths["csv"]) as f:
    lines = f.read().splitlines()
  assert lines[0].split(",") == list(evaluation.csv_columns("symbols")) and len(lines) == 4
  with open(paths["png"], "rb") as f:
    assert f.read(4) == b"\x89PNG"


def test_evaluate_and_translate_command_lines(workdir, tmp_path):
  d, _, _ = workdir
  p = _cli("evaluate", "--workdir", d, "--split", "test", "--beam", "3")
  assert p.returncode == 0, p.stderr
  with open(os.path.join(d, "eval", "test.json")) as f:
    rep = json.load(f)
  assert rep["decoding"]["beam_size"] == 3 and rep["split"] == "test"
  assert os.path.exists(os.path.join(d, "eval", "test_by_length.csv"))
  assert "sequence_accuracy" in p.stdout
  p = _cli("translate", "--workdir", d, "--text", "4 5 3", "--text", "1 2", "--beam", "2")
  assert p.returncode == 0, p.stderr
  lines = p.stdout.strip().splitlines()
  assert len(lines) == 2 and all(
    set(line.split()) <= set("0123456789") or line == "" for line in lines
  )
  run = workdir_lib.load(d)

  model, config = run.model, run.config
  (r,) = evaluation.translate(model, config, run.task, ["4 5"])
  assert r["source"] == ["4", "5"] and r["attention"] is None  # rnn_encdec
  assert r["text"] == " ".join(t for t in r["output"] if t != "</s>")


def test_no_checkpoint_or_wrong_model_is_one_clear_line(workdir, tmp_path):
  d, config, _ = workdir
  empty = tmp_path / "empty"
  empty.mkdir()
  shutil.copy(os.path.join(d, "config.json"), empty / "config.json")
  p = _cli("evaluate", "--workdir", str(empty))
  assert p.returncode == 2
  assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: no checkpoint in ")
  # a checkpoint written by another model: same files, bigger hidden size
  other = tmp_path / "other"
  shutil.copytree(d, other)
  cfg = json.loads((other / "config.json").read_text())
  cfg["model"]["hidden_size"] = 48
  (other / "config.json").write_text(json.dumps(cfg))
  p = _cli("evaluate", "--workdir", str(other))
  assert p.returncode == 2 and p.stderr.count("\n") == 1
  assert "does not fit the model in" in p.stderr and "hidden_size=48" in p.stderr
  with pytest.raises(WorkdirError, match="config.json not found"):
    workdir_lib.load(str(tmp_path / "nowhere"))


def test_argmax_correct_counts_what_argmax_would():
  """Token accuracy without an argmax: first maximum wins ties, the first NaN
  wins a row that has one, ±inf rows, PAD targets count nothing."""
  import jax.numpy as jnp

  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 6, 9)).astype(np.float32)
  logits[0, 0, [2, 5]] = 10.0  # tie: index 2 is the argmax
  logits[0, 1, [4, 7]] = np.nan  # first NaN: index 4
  logits[1, 0, :] = np.inf  # all +inf: index 0
  logits[1, 1, [1, 3]] = [-np.inf, np.inf]
  logits[2, :, 3] = 50.0  # a whole example predicts 3
  want_argmax = np.asarray(jnp.argmax(jnp.asarray(logits), -1))
  for targets in (
    want_argmax,  # every position right (PAD ones aside)
    rng.integers(0, 9, size=(3, 6)),
    np.array([[5, 7, 0, 1, 2, 3], [0, 3, 1, 1, 1, 1], [3, 3, 3, 0, 0, 4]]),
  ):
    targets = targets.astype(np.int32)
    want = int(metrics.token_correct(jnp.asarray(want_argmax), jnp.asarray(targets)))
    got = int(metrics.argmax_correct(jnp.asarray(logits), jnp.asarray(targets)))
    assert got == want
  assert int(metrics.argmax_correct(jnp.asarray(logits), jnp.asarray(want_argmax))) == int(
    (want_argmax != 0).sum()
  )
