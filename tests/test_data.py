"""Data: synthetic tasks, local files and TFDS without TensorFlow, tokenizers,
the bucketed pipeline and its resume, and every bad-input message."""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, tiny_config

from attention_jax import config as config_lib
from attention_jax import data as data_lib
from attention_jax import step as step_lib
from attention_jax import train, validation
from attention_jax import workdir as workdir_lib
from attention_jax.data import batching, parallel_text, reorder, tokenizers
from attention_jax.data.vocab import BOS, EOS, PAD, Vocabulary
from attention_jax.errors import DataError

# ---------------------------------------------------------------------------
# Synthetic tasks


def _content(row):
  return [int(x) for x in row if x not in (PAD, BOS, EOS)]


def _task(name, **kw):
  return data_lib.make_task(tiny_config(**{"data.task": name, **kw}))


@pytest.mark.parametrize("name", ["copy", "reverse", "sort", "addition", "reorder"])
def test_synthetic_deterministic_and_lengths(name):
  kw = {
    "data.train_min_length": 6,
    "data.train_max_length": 12,
    "data.eval_min_length": 13,
    "data.eval_max_length": 16,
  }
  a, b = _task(name, **kw), _task(name, **kw)
  other = _task(name, **kw, seed=1)
  for k in ("src", "tgt_in", "tgt_out"):
    np.testing.assert_array_equal(a.train_batch(3)[k], b.train_batch(3)[k])
    np.testing.assert_array_equal(a.eval_set("eval")[k], b.eval_set("eval")[k])
  assert not np.array_equal(a.train_batch(3)["src"], a.train_batch(4)["src"])
  assert not np.array_equal(a.train_batch(3)["src"], other.train_batch(3)["src"])
  assert not np.array_equal(a.eval_set("eval")["src"], a.eval_set("test")["src"])
  for batch, (lo, hi) in ((a.train_batch(0), (6, 12)), (a.eval_set(), (13, 16))):
    n = (batch["src"] != PAD).sum(1)
    if name == "addition":  # two operands of lo..hi digits and a "+"
      assert n.min() >= 2 * lo + 1 and n.max() <= 2 * hi + 1
    else:
      assert n.min() >= lo and n.max() <= hi
    # BOS y … / y … EOS
    assert (batch["tgt_in"][:, 0] == BOS).all()
    np.testing.assert_array_equal(
      batch["tgt_in"][:, 1:], batch["tgt_out"][:, :-1] * (batch["tgt_out"][:, :-1] != EOS)
    )


def test_reverse_copy_sort_properties():
  for name, fn in (("reverse", lambda s: s[::-1]), ("copy", lambda s: s), ("sort", sorted)):
    batch = _task(name).train_batch(0)
    for s, t in zip(batch["src"], batch["tgt_out"], strict=True):
      assert _content(t) == list(fn(_content(s)))
  sorted_ = _task("sort").eval_set()
  assert any(_content(s) != sorted(_content(s)) for s in sorted_["src"])


def test_addition_is_correct():
  task = _task("addition", **{"data.train_min_length": 1, "data.train_max_length": 4})
  batch = task.train_batch(0)
  for s, t in zip(batch["src"], batch["tgt_out"], strict=True):
    a, b = task.detokenize(s, "src").split("+")
    assert int(task.detokenize(t)) == int(a) + int(b)
    assert a == str(int(a)) and b == str(int(b))  # no leading zeros
  assert task.src_vocab.tokens[4:] == list("0123456789+")
  assert task.eval_references()[0] == task.detokenize(task.eval_set()["tgt_out"][0])


def test_reorder_alignment_is_a_permutation_of_content_words():
  lex = reorder.Lexicon.make(12)
  rng = np.random.default_rng(0)
  en_forms = {}
  moved = 0
  for _ in range(200):
    p = reorder.generate(rng, lex, depth=2, clauses=2, min_length=6, max_length=40)
    src = [i for i, _ in p.alignment]
    tgt = [j for _, j in p.alignment]
    assert len(set(src)) == len(src) and len(set(tgt)) == len(tgt)  # a bijection
    # Every noun/verb/preposition of either side is aligned.
    nouns_en = {e for e, _, _ in lex.animate + lex.places}
    nouns_de = {g for _, g, _ in lex.animate + lex.places}
    assert {i for i, w in enumerate(p.source) if w in nouns_en} <= set(src)
    assert {j for j, w in enumerate(p.target) if w in nouns_de} <= set(tgt)
    for i, j in p.alignment:  # aligned words translate each other
      en_forms.setdefault(p.source[i], set()).add(p.target[j])
    noun_map = {e: g for e, g, _ in lex.animate + lex.places}
    for i, j in p.alignment:
      if p.source[i] in noun_map:
        assert p.target[j] == noun_map[p.source[i]]
    assert len(p.target) <= 40
    moved += tgt != sorted(tgt)
  assert moved > 100  # the order really changes
  assert en_forms["saw"] == {"sah"} and en_forms["seen"] <= {"gesehen", "sehen"}


def test_reorder_seed_example():
  pair, gloss = reorder.seed_example()
  assert reorder.sentence(pair.source) == (
    "The dog, who must have been able to see the cat running through the garden."
  )
  assert reorder.sentence(pair.target) == (
    "Der Hund, der die Katze durch den Garten haben rennen sehen können musste."
  )
  assert reorder.sentence(gloss) == (
    "The dog, who the cat through the garden have running see able must."
  )


def test_reorder_knobs_grow_length_and_vocabulary():
  def mean_len(depth, clauses):
    rng = np.random.default_rng(0)
    lex = reorder.Lexicon.make(10)
    return np.mean(
      [len(reorder.generate(rng, lex, depth, clauses, 1, 200).source) for _ in range(100)]
    )

  assert mean_len(0, 1) < mean_len(2, 1) < mean_len(2, 3)
  small, big = reorder.Lexicon.make(5), reorder.Lexicon.make(40)
  assert len(small.animate) == 5 and len(big.animate) == 40
  assert len(big.source_tokens()) > len(small.source_tokens())
  task = _task(
    "reorder", **{"data.vocab_size": 40, "data.train_max_length": 30, "data.eval_max_length": 30}
  )
  assert len(task.src_vocab) == len(big.source_tokens()) + 4
  task = _task(
    "reorder", **{"data.train_min_length": 6, "data.train_max_length": 6, "data.eval_max_length": 9}
  )
  assert ((task.train_batch(0)["src"] != PAD).sum(1) == 6).all()
  with pytest.raises(ValueError, match="no sentence of 1..4 tokens"):
    _task("reorder", **{"data.train_max_length": 4, "data.eval_max_length": 4})


# ---------------------------------------------------------------------------
# Local files → array_record → data source, without TensorFlow


def _write(path, data):
  mode = "wb" if isinstance(data, bytes) else "w"
  with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as f:
    f.write(data)
  return str(path)


PAIRS = [
  ("a b c", "x y"),
  ("b c", "y z w"),
  ("c a", "z"),
  ("a", "x x"),
  ("b b a c", "w y"),
  ("c", "z z z"),
]


def _tsv(tmp_path, name="train.tsv", pairs=PAIRS):
  return _write(tmp_path / name, "".join(f"{s}\t{t}\n" for s, t in pairs))


def _files_config(tmp_path, train_path, eval_path, **kw):
  return tiny_config(
    **{
      "data.task": "files",
      "data.train_path": train_path,
      "data.eval_path": eval_path,
      "data.tfds_data_dir": str(tmp_path / "tfds"),
      "data.max_length": 8,
      "train.batch_size": 4,
      **kw,
    }
  )


def test_files_round_trip_without_tensorflow(tmp_path):
  import tensorflow_datasets as tfds

  train_path = _tsv(tmp_path)
  src = _write(tmp_path / "dev.src", "a b\nc\n")
  _write(tmp_path / "dev.tgt", "x\ny z\n")
  directory, reports = parallel_text.make_files_dataset(
    {"train": train_path, "eval": str(tmp_path / "dev")}, str(tmp_path / "tfds")
  )
  assert "tensorflow" not in sys.modules
  # Read back by a reader that knows nothing of the builder class.
  sources = tfds.builder_from_directory(directory).as_data_source()
  assert "tensorflow" not in sys.modules
  rows = parallel_text.read_source(sources["train"], "source", "target", "t")
  assert rows == [(n, s, t) for n, (s, t) in enumerate(PAIRS, 1)]
  assert parallel_text.read_source(sources["eval"], "source", "target", "e") == [
    (1, "a b", "x"),
    (2, "c", "y z"),
  ]
  assert reports["train"]["pairs"] == 6 and reports["eval"]["file"] == (f"{src} + {src[:-4]}.tgt")
  # Unchanged files reuse the dataset; changed files are rebuilt elsewhere.
  again, _ = parallel_text.make_files_dataset(
    {"train": train_path, "eval": src}, str(tmp_path / "tfds")
  )
  assert again == directory
  _tsv(tmp_path, pairs=PAIRS[:3])
  changed, _ = parallel_text.make_files_dataset(
    {"train": train_path, "eval": src}, str(tmp_path / "tfds")
  )
  assert changed != directory
  rows = parallel_text.read_source(
    tfds.builder_from_directory(changed).as_data_source()["train"], "source", "target", "t"
  )
  assert len(rows) == 3


def test_files_task_batches_and_references(tmp_path):
  task = data_lib.make_task(
    _files_config(
      tmp_path,
      _tsv(tmp_path),
      _tsv(tmp_path, "dev.tsv", PAIRS[:3]),
      **{"data.bucket_boundaries": "2"},
    )
  )
  assert task.src_vocab.tokens[4:] == ["c", "a", "b"]  # by count, then by token
  assert task.tgt_vocab.tokens[4:] == ["z", "x", "y", "w"]
  it = task.train_iterator()
  widths = set()
  for _ in range(6):
    b = next(it)
    assert b["src"].shape[0] == 4
    widths.add(b["src"].shape[1])
    assert b["tgt_in"].shape[1] == b["src"].shape[1] + 1
    for s, t in zip(b["src"], b["tgt_out"], strict=True):
      pair = (task.detokenize(s, "src"), task.detokenize(t))
      assert pair in PAIRS
  assert widths == {2, 8}
  ev = task.eval_set("eval")
  assert [task.detokenize(r) for r in ev["tgt_out"]] == [t for _, t in PAIRS[:3]]
  assert task.eval_references("eval") == [t for _, t in PAIRS[:3]]
  assert task.eval_sources("eval") == [s for s, _ in PAIRS[:3]]
  np.testing.assert_array_equal(task.eval_source_lengths("eval"), [3, 2, 2])


@pytest.mark.parametrize(
  "name,keys",
  [("wmt14_translate/de-en", ("de", "en")), ("ted_hrlr_translate/pt_to_en", ("pt", "en"))],
)
def test_catalog_dataset_offline_with_mock_data(tmp_path, name, keys):
  import tensorflow_datasets as tfds

  config = tiny_config(
    **{
      "data.task": f"tfds:{name}",
      "data.tfds_data_dir": str(tmp_path / "tfds"),
      "data.tokenizer": "char",
      "data.max_length": 32,
      "train.batch_size": 4,
    }
  )
  validation.validate(config)
  with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path / "tfds")):
    task = data_lib.make_task(config)
    ev = task.eval_set("eval")
    batch = next(task.train_iterator())
    raw = tfds.data_source(name, split="validation", data_dir=str(tmp_path / "tfds"))
  assert "tensorflow" not in sys.modules
  assert (task.corpus.src_key, task.corpus.tgt_key) == keys  # supervised keys
  assert ev["src"].shape[0] == 12 and batch["src"].shape == (4, 32)
  refs = task.eval_references("eval")
  src, tgt = keys
  # References are the raw text (not stripped, not cut at data.max_length).
  assert refs == [r[tgt] for r in raw if r[src].strip() and r[tgt].strip()]
  assert task.detokenize(ev["tgt_out"][0]) == refs[0].strip()[:32]
  # mock_data serves the same examples in every split: all of them overlap.
  assert task.held_out()["eval"] == {"pairs": 12, "pairs_in_train": 12, "sources_in_train": 12}


def test_catalog_unknown_name_is_one_line(tmp_path):
  config = tiny_config(
    **{"data.task": "tfds:no_such_dataset_xyz", "data.tfds_data_dir": str(tmp_path)}
  )
  with pytest.raises(
    DataError,
    match=r"^data.task 'tfds:no_such_dataset_xyz': "
    "no such TFDS dataset$",
  ):
    data_lib.make_task(config)


# ---------------------------------------------------------------------------
# Bad input: one line naming the file and line


def _bad(tmp_path, train_bytes, **kw):
  path = _write(tmp_path / kw.pop("name", "train.tsv"), train_bytes)
  config = _files_config(tmp_path, path, _tsv(tmp_path, "dev.tsv"), **kw)
  with pytest.raises(DataError) as e:
    data_lib.make_task(config)
  assert "\n" not in str(e.value)
  return path, str(e.value)


def test_bad_missing_and_empty_files(tmp_path):
  config = _files_config(tmp_path, str(tmp_path / "nope.tsv"), _tsv(tmp_path, "dev.tsv"))
  with pytest.raises(DataError, match=r"^data.train_path: file not found: .*nope.tsv"):
    data_lib.make_task(config)
  path, msg = _bad(tmp_path, b"")
  assert msg == f"{path}: file is empty"
  path, msg = _bad(tmp_path, b"\n\n", name="blank.tsv")
  assert msg == f"{path}: file is empty"
  src = _write(tmp_path / "x.src", "a\n")  # the .tgt of a pair is missing
  config = _files_config(tmp_path, src, _tsv(tmp_path, "dev.tsv"))
  with pytest.raises(DataError, match=r"data.train_path: file not found: .*x.tgt"):
    data_lib.make_task(config)


def test_bad_utf8_names_the_line(tmp_path):
  path, msg = _bad(tmp_path, b"a\tb\nc\td\ne\xff\tf\n")
  assert msg == f"{path}:3: invalid UTF-8 (byte 0xff at column 2)"


def test_bad_tabs_name_the_line(tmp_path):
  path, msg = _bad(tmp_path, b"a\tb\nno tab here\n")
  assert msg == f"{path}:2: expected exactly one tab (source<TAB>target), found 0"
  path, msg = _bad(tmp_path, b"a\tb\nc\td\ne\tf\tg\n", name="t2.tsv")
  assert msg == f"{path}:3: expected exactly one tab (source<TAB>target), found 2"


def test_bad_line_count_mismatch_names_both(tmp_path):
  src = _write(tmp_path / "train.src", "a\nb\nc\n")
  tgt = _write(tmp_path / "train.tgt", "x\ny\n")
  config = _files_config(tmp_path, str(tmp_path / "train"), _tsv(tmp_path, "dev.tsv"))
  with pytest.raises(DataError) as e:
    data_lib.make_task(config)
  assert str(e.value) == (f"{src} has 3 lines but {tgt} has 2 lines; they must be line-aligned")


def test_empty_sentences_dropped_and_counted(tmp_path, caplog):
  path = _write(tmp_path / "train.tsv", "a b\tx\n\ty\n \t \nc\tz\nb\t\n")
  config = _files_config(tmp_path, path, _tsv(tmp_path, "dev.tsv"))
  with caplog.at_level(logging.INFO):
    task = data_lib.make_task(config)
  assert [s for _, s, _ in task.corpus.pairs("train")] == ["a b", "c"]
  assert f"{path}: 2 sentence pairs; dropped 3 with an empty side (first at line 2)" in (
    caplog.text
  )


def test_lines_split_on_newline_only(tmp_path):
  # U+2028, U+0085 and a lone \r are text; \r\n ends a line like \n.
  path = _write(tmp_path / "train.tsv", "a\u2028b\tx\r\nc\x85d\ty\ne\rf\tz\n".encode("utf-8"))
  config = _files_config(tmp_path, path, _tsv(tmp_path, "dev.tsv"), **{"data.tokenizer": "char"})
  task = data_lib.make_task(config)
  assert task.corpus.pairs("train") == [(1, "a\u2028b", "x"), (2, "c\x85d", "y"), (3, "e\rf", "z")]
  assert {"\u2028", "\x85", "\r"} <= set(task.src_vocab.tokens)


@pytest.mark.parametrize("policy", ["truncate", "drop"])
def test_overlong_truncated_or_dropped_and_counted(tmp_path, caplog, policy):
  pairs = [("a " * 10, "x"), ("a", "y " * 9), ("a b", "x y")]
  config = _files_config(
    tmp_path,
    _tsv(tmp_path, pairs=pairs),
    _tsv(tmp_path, "dev.tsv", pairs),
    **{"data.max_length": 4, "data.overlong": policy},
  )
  with caplog.at_level(logging.INFO):
    task = data_lib.make_task(config)
    e = task.encoded("train")
    ev = task.eval_set("eval")
  kept = 3 if policy == "truncate" else 1
  assert len(e["src"]) == kept and max(len(s) for s in e["src"]) <= 4
  done = "truncated" if policy == "truncate" else "dropped"
  assert f"train: 2 of 3 pairs longer than data.max_length=4 tokens ({done})" in (caplog.text)
  # Evaluation sets are truncated, never dropped: references stay whole and
  # raw (the trailing space too); source lengths are words of the raw line.
  assert ev["src"].shape == (3, 4)
  assert task.eval_references("eval")[1] == "y " * 9
  np.testing.assert_array_equal(task.eval_source_lengths("eval"), [10, 1, 2])


def test_bad_input_stops_the_cli_with_one_line(tmp_path):
  bad = _write(tmp_path / "bad.tsv", "a\tb\nc d\n")
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.run",
      "--config",
      "configs/quickstart.py",
      "--workdir",
      str(tmp_path / "w"),
      "--config.data.task=files",
      f"--config.data.train_path={bad}",
      f"--config.data.eval_path={bad}",
      f"--config.data.tfds_data_dir={tmp_path / 'tfds'}",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1] == (
    f"error: {bad}:2: expected exactly one tab (source<TAB>target), found 0"
  )
  assert not os.path.exists(tmp_path / "w" / "metrics.jsonl")  # nothing trained


def test_config_validation_of_data_keys():
  cases = [
    (
      {"data.tokenizer": "bpe"},
      "'data.tokenizer' has value 'bpe'; allowed: 'char', 'word', 'sentencepiece'",
    ),
    ({"data.overlong": "cut"}, "'data.overlong' has value 'cut'"),
    ({"data.bucket_boundaries": "8,x"}, "expected comma-separated integers"),
    ({"data.bucket_boundaries": "16,8"}, "expected increasing integers"),
    ({"data.bucket_boundaries": "100"}, "in 1..data.max_length (64)"),
    ({"data.task": "files"}, "'data.train_path' is empty"),
    ({"data.task": "tfds:"}, "'data.task' has value 'tfds:'"),
    ({"data.task": "tfds:x", "data.eval_split": ""}, "'data.eval_split' is empty"),
    ({"data.min_count": 0}, "'data.min_count' must be >= 1"),
  ]
  for overrides, message in cases:
    with pytest.raises(
      config_lib.ConfigError,
      match=".*" + message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\."),
    ):
      validation.validate(tiny_config(**overrides))
  for task in ("reorder", "sort", "addition", "files", "tfds:wmt14_translate/de-en"):
    assert data_lib.is_known_task(task)


# ---------------------------------------------------------------------------
# Tokenizers


def test_char_and_word_tokenizers():
  texts = ["the cat sat", "the dog", "the cat"]
  w = tokenizers.WordTokenizer.train(texts, min_count=2)
  assert w.vocab.tokens[4:] == ["the", "cat"]
  assert w.decode(w.encode("the dog") + [EOS, 5]) == "the <unk>"
  c = tokenizers.CharTokenizer.train(texts)
  assert c.decode(c.encode("the cat sat")) == "the cat sat"
  assert tokenizers.WordTokenizer.train(texts, max_vocab=5).vocab.tokens[4:] == ["the"]


def test_vocabulary_file_round_trip_with_odd_tokens(tmp_path):
  v = Vocabulary.from_symbols(["a", " ", "\r", "\u2028", "\x85", "ü", "<x>"])
  v.save(str(tmp_path / "v.txt"))
  assert Vocabulary.load(str(tmp_path / "v.txt")) == v


def test_sentencepiece_trained_saved_and_rebuilt_from_workdir(tmp_path):
  texts = [t for _, t in PAIRS] * 5 + ["the quick brown fox jumps over the lazy dog"] * 5
  tok = tokenizers.SentencePieceTokenizer.train(texts, 40, cache_dir=str(tmp_path / "c"))
  assert tok.vocab.tokens[:4] == ["<pad>", "<s>", "</s>", "<unk>"]
  ids = tok.encode("the lazy fox")
  assert tok.decode(ids + [EOS, 7, 7]) == "the lazy fox"
  assert len(os.listdir(tmp_path / "c")) == 1  # cached beside the data
  again = tokenizers.SentencePieceTokenizer.train(texts, 40, cache_dir=str(tmp_path / "c"))
  assert again.model_proto == tok.model_proto
  record = tokenizers.save(tok, str(tmp_path), "src")
  loaded = tokenizers.load(str(tmp_path), record)
  assert loaded.encode("the lazy fox") == ids
  assert Vocabulary.load(str(tmp_path / "vocab_src.txt")) == tok.vocab
  with open(tmp_path / "spm_src.model", "ab") as f:
    f.write(b"x")
  with pytest.raises(ValueError, match="does not match the hash"):
    tokenizers.load(str(tmp_path), record)


# ---------------------------------------------------------------------------
# Pipeline


def _lengths_data(n=23, seed=0):
  rng = np.random.default_rng(seed)
  src = [np.arange(4, 4 + int(rng.integers(1, 13))) for _ in range(n)]
  tgt = [np.full(int(rng.integers(1, 13)), 5 + i % 3) for i in range(n)]
  return src, tgt


def test_buckets_cover_every_example_each_epoch():
  src, tgt = _lengths_data()
  bb = batching.BucketedBatches(src, tgt, 4, (4, 8, 12), seed=3)
  assert bb.batches_per_epoch == sum(-(-c // 4) for c in bb.bucket_sizes)
  for epoch in range(2):
    seen = set()
    for b, rows in bb.epoch_plan(epoch):
      assert len(rows) == 4
      for i in rows:
        assert max(len(src[i]), len(tgt[i])) <= bb.boundaries[b]
        assert b == 0 or max(len(src[i]), len(tgt[i])) > bb.boundaries[b - 1]
      seen |= set(rows)
    assert seen == set(range(len(src)))
  assert bb.epoch_plan(0) != bb.epoch_plan(1)  # reshuffled
  batch = bb.batch(1)
  assert batch["src"].shape[1] + 1 == batch["tgt_in"].shape[1]
  assert batch["src"].shape[1] in (4, 8, 12)


def test_resume_mid_epoch_equals_uninterrupted():
  src, tgt = _lengths_data()

  def make():
    return batching.IndexedIterator(batching.BucketedBatches(src, tgt, 4, (6, 12), seed=5).batch)

  full = make()
  want = [next(full) for _ in range(20)]  # several epochs (7 batches each)
  first = make()
  for _ in range(9):
    next(first)
  state = json.loads(json.dumps(first.get_state()))  # as stored in a checkpoint
  resumed = make()
  resumed.set_state(state)
  for w in want[9:]:
    got = next(resumed)
    for k in w:
      np.testing.assert_array_equal(got[k], w[k])


# ---------------------------------------------------------------------------
# End to end


def test_files_train_end_to_end_and_rebuild_from_workdir(tmp_path):
  """SentencePiece on a TSV: trains, and the model is rebuilt from the workdir
  alone after the data and its caches are gone."""
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  lines = (
    open(os.path.join(ROOT, "tests", "data", "toy_train.tsv"), encoding="utf-8").read().splitlines()
  )
  train_path = _write(data_dir / "train.tsv", "\n".join(lines[:300]) + "\n")
  dev_path = _write(data_dir / "dev.tsv", "\n".join(lines[300:340]) + "\n")
  config = tiny_config(
    **{
      "data.task": "files",
      "data.train_path": train_path,
      "data.eval_path": dev_path,
      "data.tfds_data_dir": str(data_dir / "tfds"),
      "data.tokenizer": "sentencepiece",
      "data.sp_vocab_size": 60,
      "data.max_length": 40,
      "train.steps": 20,
      "eval.every_steps": 20,
      "checkpoint.every_steps": 20,
    }
  )
  workdir = str(tmp_path / "w")
  final = train.train_and_evaluate(config, workdir)
  assert np.isfinite(final["loss"]) and final["loss"] < np.log(60)
  assert sorted(f for f in os.listdir(workdir) if not os.path.isdir(os.path.join(workdir, f))) == [
    "config.json",
    "data_fingerprint.json",
    "env.json",
    "metrics.jsonl",
    "spm_src.model",
    "spm_tgt.model",
    "tokenizer.json",
    "vocab_src.txt",
    "vocab_tgt.txt",
  ]
  assert "tensorflow" not in sys.modules
  import shutil

  shutil.rmtree(data_dir)
  run = workdir_lib.load(workdir)

  assert run.model is not None  # rebuilt without the data directory
  assert len(run.task.src_vocab) == len(Vocabulary.load(os.path.join(workdir, "vocab_src.txt")))
  ids = run.task.encode("the dog saw the cat .")
  assert run.task.detokenize(ids, "src") == "the dog saw the cat ."
  assert int(run.state.step) == 20


def _seq2seq_models():
  from attention_jax import models

  return sorted(n for n, cls in models.MODELS.items() if hasattr(cls, "encode"))


@pytest.mark.parametrize("model_name", _seq2seq_models())
def test_reorder_trains_with_every_seq2seq_model(model_name):
  """Different source/target vocabularies and widths go through each model."""
  import jax

  config = tiny_config(
    **{
      "data.task": "reorder",
      "model.name": model_name,
      "data.train_min_length": 6,
      "data.train_max_length": 12,
      "data.eval_min_length": 6,
      "data.eval_max_length": 12,
      "train.batch_size": 8,
      "train.schedule": "constant",
      "train.warmup_steps": 0,
      "train.learning_rate": 1e-2,
    }
  )
  validation.validate(config)
  run = workdir_lib.make_run(config)
  assert len(run.task.src_vocab) != len(run.task.tgt_vocab)
  step = jax.jit(
    step_lib.make_train_step(run.graphdef, run.tx, run.schedule, config, run.objective)
  )
  batch = next(run.task.train_iterator())
  state, first = step(run.state, batch)
  for _ in range(3):
    state, m = step(state, batch)
  assert np.isfinite(float(m["loss"])) and float(m["loss"]) < float(first["loss"])
