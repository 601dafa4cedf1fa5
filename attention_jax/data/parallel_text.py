"""Real parallel text through TensorFlow Datasets, without TensorFlow: docs/data.md.

``data.task=files`` (a TSV or ``.src``/``.tgt`` files, checked line by line, written by a
small TFDS builder as ``array_record`` and read back as a data source) and
``data.task=tfds:NAME`` (a catalog dataset read with ``tfds.data_source``): one path.
``tfds.load``/``as_dataset``/``TranslateFolder`` would import TensorFlow; nothing here
does. Each line is stored as it is (line end removed), so BLEU and chrF score the raw
reference (docs/evaluation.md#one-evaluation-truth).
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import importlib
import json
import os
import unicodedata

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from attention_jax import fileio
from attention_jax.config_fields import context, read_when
from attention_jax.data import batching
from attention_jax.data import tokenizers as tok_lib
from attention_jax.data.batching import IndexedIterator, pad_batch
from attention_jax.data.vocab import PAD
from attention_jax.errors import DataError, one_line

OVERLONG = ("truncate", "drop")  # data.overlong
NORMALIZATIONS = ("none", "NFC")  # data.normalize
ROLES = ("train", "eval", "test")
_FORMAT = "attention_jax parallel text v2"  # v2: raw (unstripped) text


# ---------------------------------------------------------------------------
# What the task reads


def _is_files(settings) -> bool:
  return settings.task == "files"


def _is_catalog(settings) -> bool:
  return settings.task != "files"


def _reads_langs(settings) -> bool:
  """Feature keys of ``tfds:NAME``; the Moses languages of the word tokenizer."""
  return _is_catalog(settings) or settings.tokenizer == "word"


def _is_sentencepiece(settings) -> bool:
  return settings.tokenizer == "sentencepiece"


def _counts_tokens(settings) -> bool:
  return settings.tokenizer != "sentencepiece"


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParallelTextConfig:
  """The ``data.*`` keys ``files`` and ``tfds:NAME`` read."""

  task: str  # files | tfds:NAME
  seed: int = context()  # the run's seed: batch order, SentencePiece training
  batch_size: int = context()  # train.batch_size
  # files: a TSV (source<TAB>target) or an X.src/X.tgt pair per split
  train_path: str = read_when(_is_files, "")
  eval_path: str = read_when(_is_files, "")
  test_path: str = read_when(_is_files, "")  # optional
  # tfds:NAME: the catalog's split specs
  train_split: str = read_when(_is_catalog, "train")
  eval_split: str = read_when(_is_catalog, "validation")
  test_split: str = read_when(_is_catalog, "test")  # "" = none
  # tfds:NAME: the feature keys ("" = the supervised keys); word: the Moses languages
  source_lang: str = read_when(_reads_langs, "")
  target_lang: str = read_when(_reads_langs, "")
  tfds_data_dir: str = ""  # TFDS data dir and cache ("" = TFDS default)
  max_length: int = 64  # longest source/target in tokens
  overlong: str = "truncate"  # longer training pairs: truncate | drop
  bucket_boundaries: str = ""  # length buckets, e.g. "8,16,32" ("" = one)
  tokenizer: str = "word"  # char | word | sentencepiece
  min_count: int = read_when(_counts_tokens, 1)  # char/word: rarer tokens become <unk>
  max_vocab: int = read_when(_counts_tokens, 0)  # char/word: most frequent N (0 = all)
  sp_vocab_size: int = read_when(_is_sentencepiece, 8000)  # sentencepiece: pieces per side
  normalize: str = "none"  # none | NFC


# ---------------------------------------------------------------------------
# Reading and checking local files


def split_lines(data: bytes, path: str) -> list[str]:
  """The lines of a UTF-8 file, split on ``\\n`` only."""
  if not data.strip(b"\n\r"):
    raise DataError(f"{path}: file is empty")
  if data.startswith(codecs.BOM_UTF8):
    data = data[len(codecs.BOM_UTF8) :]
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    raise DataError(
      f"{path}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x} at column {column})"
    ) from None
  lines = text.split("\n")
  if lines[-1] == "":
    lines.pop()
  return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_bytes(path: str, key: str) -> bytes:
  if not os.path.isfile(path):
    raise DataError(f"{key}: file not found: {path}")
  with open(path, "rb") as f:
    return f.read()


def expand_paths(path: str, key: str) -> tuple[str, ...]:
  """(tsv,) or (source, target) files that ``path`` names.

  ``X.src`` → (X.src, X.tgt); an existing file → TSV; else ``X.src`` and
  ``X.tgt`` if either exists.
  """
  if path.endswith(".src"):
    return path, path[:-4] + ".tgt"
  if os.path.isfile(path):
    return (path,)
  if os.path.exists(path + ".src") or os.path.exists(path + ".tgt"):
    return path + ".src", path + ".tgt"
  raise DataError(f"{key}: file not found: {path} (nor {path}.src and {path}.tgt)")


def parse_parallel(
  files: tuple[str, ...], blobs: tuple[bytes, ...]
) -> tuple[list[tuple[int, str, str]], dict]:
  """[(line number, source, target)] with empty pairs dropped, and a report.

  The text is kept as in the file (only ``\\n`` and a ``\\r`` before it
  removed): references are scored as they are."""
  if len(files) == 1:
    path = files[0]
    pairs = []
    for n, line in enumerate(split_lines(blobs[0], path), 1):
      tabs = line.count("\t")
      if tabs != 1:
        raise DataError(f"{path}:{n}: expected exactly one tab (source<TAB>target), found {tabs}")
      s, t = line.split("\t")
      pairs.append((n, s, t))
  else:
    src = split_lines(blobs[0], files[0])
    tgt = split_lines(blobs[1], files[1])
    if len(src) != len(tgt):
      raise DataError(
        f"{files[0]} has {len(src)} lines but {files[1]} has "
        f"{len(tgt)} lines; they must be line-aligned"
      )
    pairs = [(n, s, t) for n, (s, t) in enumerate(zip(src, tgt, strict=True), 1)]
  kept = [(n, s, t) for n, s, t in pairs if s.strip() and t.strip()]
  empty = [n for n, s, t in pairs if not (s.strip() and t.strip())]
  name = " + ".join(files)
  if not kept:
    raise DataError(f"{name}: no sentence pair with both sides non-empty")
  report = {
    "file": name,
    "lines": len(pairs),
    "pairs": len(kept),
    "empty_dropped": len(empty),
    "first_empty_line": empty[0] if empty else None,
  }
  return kept, report


def _log_report(report: dict) -> None:
  msg = f"{report['file']}: {report['pairs']} sentence pairs"
  if report["empty_dropped"]:
    msg += (
      f"; dropped {report['empty_dropped']} with an empty side "
      f"(first at line {report['first_empty_line']})"
    )
  logging.info(msg)


def default_data_dir(settings: ParallelTextConfig) -> str:
  return (
    settings.tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or str(tfds.core.constants.DATA_DIR)
  )


# ---------------------------------------------------------------------------
# The array_record builder

_BUILDER = None


def _builder_class():
  """A ``GeneratorBasedBuilder`` over already-checked pairs (defined once)."""
  global _BUILDER
  if _BUILDER is not None:
    return _BUILDER

  class ParallelTextFiles(tfds.core.GeneratorBasedBuilder):
    """Local parallel text as a TFDS dataset: source, target, line number."""

    VERSION = tfds.core.Version("1.0.0")
    # No code directory to look for checksums or metadata in (TFDS's lookup
    # needs the optional `importlib_resources` package for a normal module).
    code_path = None

    def __init__(self, *, splits: dict, **kwargs):
      self._splits = splits
      super().__init__(**kwargs)

    def _info(self):
      return tfds.core.DatasetInfo(
        builder=self,
        disable_shuffling=True,  # keep file order
        features=tfds.features.FeaturesDict(
          {"source": tfds.features.Text(), "target": tfds.features.Text(), "line": np.int64}
        ),
        description="Parallel text from local files (attention_jax).",
      )

    def _split_generators(self, dl_manager):
      del dl_manager
      return {name: self._generate_examples(rows) for name, rows in self._splits.items()}

    def _generate_examples(self, rows):
      for i, (n, s, t) in enumerate(rows):
        yield i, {"source": s, "target": t, "line": n}

  _BUILDER = ParallelTextFiles
  return _BUILDER


def make_files_dataset(paths: dict[str, str], data_dir: str) -> tuple[str, dict]:
  """Checks and writes local files as an array_record TFDS dataset.

  ``paths``: role (train/eval/test) → path as in the config. Returns the
  dataset's directory (reused when the files' bytes are unchanged) and the
  reports of what was dropped.
  """
  files = {role: expand_paths(p, f"data.{role}_path") for role, p in paths.items()}
  blobs = {
    role: tuple(_read_bytes(f, f"data.{role}_path") for f in fs) for role, fs in files.items()
  }
  h = hashlib.sha256(_FORMAT.encode())
  for role in sorted(blobs):
    h.update(f"\n{role} {len(blobs[role])}\n".encode())
    for b in blobs[role]:
      h.update(hashlib.sha256(b).digest())
  root = os.path.join(data_dir, "attention_jax_files", h.hexdigest()[:20])
  report_path = os.path.join(root, "report.json")
  if os.path.exists(report_path):
    with open(report_path, encoding="utf-8") as f:
      reports = json.load(f)
  else:
    splits, reports = {}, {}
    for role in files:  # every file is checked before anything is written
      splits[role], reports[role] = parse_parallel(files[role], blobs[role])
    tfds.disable_progress_bar()
    builder = _builder_class()(splits=splits, data_dir=root, file_format="array_record")
    builder.download_and_prepare()
    fileio.atomic_write_json(report_path, reports)
    logging.info(
      "wrote %s as array_record under %s", ", ".join(" + ".join(fs) for fs in files.values()), root
    )
  for role in files:
    _log_report(reports[role])
  return os.path.join(root, "parallel_text_files", "1.0.0"), reports


def _text(value, where: str) -> str:
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:
      raise DataError(f"{where}: invalid UTF-8") from None
  return str(value)


def read_source(
  source, src_key: str, tgt_key: str, name: str, chunk: int = 10000
) -> list[tuple[int, str, str]]:
  """All (line, source, target) of a TFDS data source, in order."""
  out = []
  n = len(source)
  for start in range(0, n, chunk):
    idx = list(range(start, min(n, start + chunk)))
    try:
      rows = source.__getitems__(idx)  # one batched read
    except (AttributeError, TypeError):  # e.g. tfds.testing.mock_data's source
      rows = [source[i] for i in idx]
    for i, r in zip(idx, rows, strict=True):
      if src_key not in r or tgt_key not in r:
        raise DataError(
          f"{name}: no feature {src_key!r}/{tgt_key!r} in the "
          f"examples (they have {sorted(r)}); set data.source_lang "
          "and data.target_lang"
        )
      line = int(r["line"]) if "line" in r else i + 1
      out.append(
        (line, _text(r[src_key], f"{name} example {i}"), _text(r[tgt_key], f"{name} example {i}"))
      )
  return out


class FilesCorpus:
  """The raw text of ``data.task=files``, read through the array_record dataset."""

  def __init__(self, settings: ParallelTextConfig):
    self.paths = {"train": settings.train_path, "eval": settings.eval_path}
    if settings.test_path:
      self.paths["test"] = settings.test_path
    self.data_dir = default_data_dir(settings)
    self._splits = None
    self.directory = None

  def _load(self):
    if self._splits is None:
      self.directory, _ = make_files_dataset(self.paths, self.data_dir)
      sources = tfds.builder_from_directory(self.directory).as_data_source()
      self._splits = {
        role: read_source(sources[role], "source", "target", self.paths[role])
        for role in self.paths
      }

  def pairs(self, role: str) -> list[tuple[int, str, str]]:
    if role not in self.paths:
      raise DataError(f"data.{role}_path is empty: no {role} split")
    self._load()
    return self._splits[role]

  def cache_dir(self) -> str:
    self._load()
    return os.path.dirname(os.path.dirname(self.directory))


def catalog_record(settings: ParallelTextConfig) -> dict:
  """What identifies the data of ``data.task=tfds:NAME``: the name, the
  prepared version (None if it cannot be known without preparing it) and the
  split specs."""
  name = settings.task[len("tfds:") :]
  try:
    ensure_registered(name)
    version = str(tfds.builder(name, data_dir=default_data_dir(settings)).version)
  except Exception:  # noqa: BLE001 - unknown here; the task's reader names the problem
    version = None
  splits = {r: getattr(settings, f"{r}_split") for r in ROLES if getattr(settings, f"{r}_split")}
  return {"name": name, "version": version, "splits": splits}


def ensure_registered(name: str) -> None:
  """Imports the catalog module that registers ``name`` (e.g. ``translate.wmt14``)."""
  base = name.split("/")[0].split(":")[0]
  try:
    tfds.builder_cls(base)
    return
  except Exception:  # DatasetNotFoundError: not registered until imported
    pass
  short = base[: -len("_translate")] if base.endswith("_translate") else base
  for module in (f"tensorflow_datasets.translate.{short}", f"tensorflow_datasets.translate.{base}"):
    try:
      importlib.import_module(module)
      tfds.builder_cls(base)
      return
    except Exception:
      continue
  raise DataError(f"data.task 'tfds:{name}': no such TFDS dataset")


class CatalogCorpus:
  """The raw text of ``data.task=tfds:NAME``."""

  def __init__(self, settings: ParallelTextConfig):
    self.name = settings.task[len("tfds:") :]
    self.splits = {"train": settings.train_split, "eval": settings.eval_split}
    if settings.test_split:
      self.splits["test"] = settings.test_split
    self.data_dir = default_data_dir(settings)
    self.src_key, self.tgt_key = settings.source_lang, settings.target_lang
    self._pairs: dict[str, list] = {}

  def _keys(self) -> tuple[str, str]:
    if not (self.src_key and self.tgt_key):
      info = tfds.builder(self.name, data_dir=self.data_dir).info
      keys = info.supervised_keys
      if not keys or len(keys) != 2:
        raise DataError(
          f"tfds:{self.name} names no (source, target) feature "
          "pair; set data.source_lang and data.target_lang"
        )
      self.src_key = self.src_key or keys[0]
      self.tgt_key = self.tgt_key or keys[1]
    return self.src_key, self.tgt_key

  def pairs(self, role: str) -> list[tuple[int, str, str]]:
    if role not in self._pairs:
      if role not in self.splits:
        raise DataError(f"data.{role}_split is empty: no {role} split")
      ensure_registered(self.name)
      src_key, tgt_key = self._keys()
      where = f"tfds:{self.name} split {self.splits[role]!r}"
      tfds.disable_progress_bar()
      try:
        source = tfds.data_source(
          self.name,
          split=self.splits[role],
          data_dir=self.data_dir,
          builder_kwargs={"file_format": "array_record"},
          download=True,
        )
      except Exception as e:
        raise DataError(
          f"{where}: cannot prepare or read it in {self.data_dir} "
          f"(preparing needs the network once): {type(e).__name__}: " + one_line(e)
        ) from None
      rows = read_source(source, src_key, tgt_key, where)
      kept = [(n, s, t) for n, s, t in rows if s.strip() and t.strip()]
      report = {
        "file": where,
        "lines": len(rows),
        "pairs": len(kept),
        "empty_dropped": len(rows) - len(kept),
        "first_empty_line": next((n for n, s, t in rows if not (s.strip() and t.strip())), None),
      }
      if not kept:
        raise DataError(f"{where}: no sentence pair with both sides non-empty")
      _log_report(report)
      self._pairs[role] = kept
    return self._pairs[role]

  def cache_dir(self) -> str:
    return os.path.join(self.data_dir, "attention_jax_tokenizers", self.name.replace("/", "_"))


# ---------------------------------------------------------------------------
# The task


class ParallelTextTask:
  """Tokenized parallel text: the task interface of :class:`SyntheticTask`.

  Tokenizers come from ``workdir/tokenizer.json`` when it exists (a resumed
  run, or :func:`attention_jax.workdir.load`), else they are built from the
  training split. The text itself is read only when a split is first needed.
  """

  objective = "seq2seq"
  length_unit = "words"  # of eval_source_lengths: words of the raw source

  config_class = ParallelTextConfig

  def __init__(self, settings: ParallelTextConfig, workdir: str | None = None):
    self.settings = settings
    self.max_length = settings.max_length
    self.normalization = settings.normalize
    self.boundaries = batching.parse_boundaries(settings.bucket_boundaries, settings.max_length)
    self.corpus = FilesCorpus(settings) if settings.task == "files" else CatalogCorpus(settings)
    self._encoded: dict[str, dict] = {}
    self._overlap: dict | None = None
    record = os.path.join(workdir, "tokenizer.json") if workdir else None
    if record and os.path.exists(record):
      with open(record, encoding="utf-8") as f:
        saved = json.load(f)
      self.src_tok = tok_lib.load(workdir, saved["src"])
      self.tgt_tok = tok_lib.load(workdir, saved["tgt"])
      logging.info("tokenizers loaded from %s", record)
    else:
      train = self.corpus.pairs("train")
      self.src_tok = self._train_tokenizer([self.prepare(s) for _, s, _ in train], "src")
      self.tgt_tok = self._train_tokenizer([self.prepare(t) for _, _, t in train], "tgt")
    logging.info(
      "vocabularies (%s): source %d, target %d tokens",
      settings.tokenizer,
      len(self.src_vocab),
      len(self.tgt_vocab),
    )

  def normalize(self, text: str) -> str:
    """``text`` in Unicode NFC if ``data.normalize='NFC'``, else unchanged."""
    return unicodedata.normalize("NFC", text) if self.normalization == "NFC" else text

  def prepare(self, text: str) -> str:
    """What a tokenizer sees: the text stripped (and normalized)."""
    return self.normalize(text.strip())

  def _train_tokenizer(self, texts: list[str], side: str):
    d = self.settings
    if d.tokenizer == "sentencepiece":
      return tok_lib.SentencePieceTokenizer.train(
        texts,
        d.sp_vocab_size,
        seed=d.seed,
        cache_dir=os.path.join(self.corpus.cache_dir(), "spm"),
      )
    if d.tokenizer == "char":
      return tok_lib.CharTokenizer.train(texts, d.min_count, d.max_vocab)
    lang = d.source_lang if side == "src" else d.target_lang
    if not lang and isinstance(self.corpus, CatalogCorpus):
      lang = self.corpus._keys()[0 if side == "src" else 1]
    return tok_lib.WordTokenizer.train(
      texts, d.min_count, d.max_vocab, lang=tok_lib.moses_language(lang)
    )

  @property
  def src_vocab(self):
    return self.src_tok.vocab

  @property
  def tgt_vocab(self):
    return self.tgt_tok.vocab

  def save(self, workdir: str) -> None:
    """Vocabularies (text), SentencePiece models and ``tokenizer.json``."""
    record = {
      "tokenizer": self.src_tok.kind,
      "src": tok_lib.save(self.src_tok, workdir, "src"),
      "tgt": tok_lib.save(self.tgt_tok, workdir, "tgt"),
    }
    path = os.path.join(workdir, "tokenizer.json")
    fileio.atomic_write_json(path, record, indent=2)

  def tokenizer(self, side: str):
    return self.src_tok if side == "src" else self.tgt_tok

  def encode(self, text: str, side: str = "src") -> list[int]:
    return self.tokenizer(side).encode(self.prepare(text))

  def unknown(self, text: str, side: str = "src") -> list[str]:
    """The parts of ``text`` that encode to ``<unk>``."""
    return self.tokenizer(side).unknown(self.prepare(text))

  def detokenize(self, ids, side: str = "tgt") -> str:
    """Text of ids (``<unk>`` written literally), normalized as the data is."""
    return self.normalize(self.tokenizer(side).decode(ids))

  def encoded(self, role: str) -> dict:
    """Token ids of a split after the over-long policy, and its raw text."""
    if role in self._encoded:
      return self._encoded[role]
    pairs = self.corpus.pairs(role)
    M = self.max_length
    drop = role == "train" and self.settings.overlong == "drop"
    out = {"src": [], "tgt": [], "lines": [], "sources": [], "references": [], "src_lengths": []}
    over = 0
    for n, s, t in pairs:
      a, b = self.encode(s, "src"), self.encode(t, "tgt")
      if len(a) > M or len(b) > M:
        over += 1
        if drop:
          continue
        a, b = a[:M], b[:M]
      out["src"].append(np.asarray(a, np.int32))
      out["tgt"].append(np.asarray(b, np.int32))
      out["lines"].append(n)
      out["sources"].append(s)
      out["references"].append(self.normalize(t))
      out["src_lengths"].append(len(s.split()))
    if over:
      logging.warning(
        "%s: %d of %d pairs longer than data.max_length=%d tokens (%s)",
        role,
        over,
        len(pairs),
        M,
        "dropped" if drop else "truncated",
      )
    if not out["src"]:
      raise DataError(
        f"{role}: every pair is longer than data.max_length={M} and data.overlong='drop'"
      )
    self._encoded[role] = out
    return out

  def held_out(self) -> dict:
    """Pairs (and sources) of the eval/test splits that also occur in the
    training split, compared after stripping (and NFC, if applied)."""
    if self._overlap is None:
      train = self.corpus.pairs("train")
      pairs = {(self.prepare(s), self.prepare(t)) for _, s, t in train}
      sources = {p[0] for p in pairs}
      self._overlap = {
        "rule": "files/tfds splits are as given; pairs also in the training split are counted here"
      }
      for role in ("eval", "test"):
        try:
          rows = self.corpus.pairs(role)
        except DataError:  # no such split configured
          continue
        keys = [(self.prepare(s), self.prepare(t)) for _, s, t in rows]
        n_pairs = sum(k in pairs for k in keys)
        n_src = sum(k[0] in sources for k in keys)
        self._overlap[role] = {
          "pairs": len(rows),
          "pairs_in_train": n_pairs,
          "sources_in_train": n_src,
        }
        if n_pairs or n_src:
          logging.warning(
            "%s: %d of %d pairs (and %d sources) also occur in the training split",
            role,
            n_pairs,
            len(rows),
            n_src,
          )
        else:
          logging.info("%s: none of its %d pairs occurs in the training split", role, len(rows))
    return self._overlap

  def train_iterator(self) -> IndexedIterator:
    self.held_out()  # logs the overlap of eval/test with training
    e = self.encoded("train")
    batches = batching.BucketedBatches(
      e["src"], e["tgt"], self.settings.batch_size, self.boundaries, self.settings.seed
    )
    logging.info(
      "training batches: %d per epoch; buckets %s hold %s pairs",
      batches.batches_per_epoch,
      list(self.boundaries),
      batches.bucket_sizes,
    )
    return IndexedIterator(batches.batch)

  def eval_set(self, split: str = "eval") -> dict[str, np.ndarray]:
    """The whole split in file order, padded to its longest pair; ``row`` is
    each pair's index into ``eval_references(split)``."""
    e = self.encoded(split)
    if "padded" not in e:
      width = max(max(len(s) for s in e["src"]), max(len(t) for t in e["tgt"]))
      e["padded"] = pad_batch(list(zip(e["src"], e["tgt"], strict=True)), width, width)
      e["padded"]["row"] = np.arange(len(e["src"]), dtype=np.int32)
    return e["padded"]

  def eval_references(self, split: str = "eval") -> list[str]:
    """The raw target lines of ``eval_set(split)``, row by row (NFC if the
    data is normalized)."""
    return list(self.encoded(split)["references"])

  def eval_sources(self, split: str = "eval") -> list[str]:
    """The raw source lines, row by row."""
    return list(self.encoded(split)["sources"])

  def eval_source_lengths(self, split: str = "eval") -> np.ndarray:
    """Words (whitespace-separated) of each raw source line, row by row."""
    return np.asarray(self.encoded(split)["src_lengths"])

  def count_tokens(self, batch) -> int:
    return int((batch["src"] != PAD).sum() + (batch["tgt_out"] != PAD).sum())
