"""Tokenizers for real text: characters, Moses words, SentencePiece (Kudo 2018).

Every tokenizer has a :class:`~attention_jax.data.vocab.Vocabulary` (ids 0-3: PAD, BOS,
EOS, UNK) built from the training split only, ``encode(text) -> ids`` and ``decode(ids) ->
text`` (stopping at EOS; an unknown token is the literal ``<unk>``, which never matches
reference text); ``unknown(text)`` lists the parts of a text that encode to ``<unk>``.
Nothing is pickled: a vocabulary is a text file, a SentencePiece model its own ``.model``.
Documented in docs/data.md#tokenizers-and-vocabularies.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm
from sacremoses import MosesDetokenizer, MosesTokenizer

from attention_jax import fileio
from attention_jax.data.vocab import EOS, SPECIALS, UNK, Vocabulary
from attention_jax.errors import DataError

KINDS = ("char", "word", "sentencepiece")


class CharTokenizer:
  kind = "char"

  def __init__(self, vocab: Vocabulary):
    self.vocab = vocab

  @classmethod
  def train(cls, texts: Iterable[str], min_count: int = 1, max_vocab: int = 0):
    return cls(_from_counts(collections.Counter(c for t in texts for c in t), min_count, max_vocab))

  def encode(self, text: str) -> list[int]:
    return self.vocab.encode(text)

  def decode(self, ids) -> str:
    return "".join(self.vocab.decode(ids))

  def unknown(self, text: str) -> list[str]:
    return [c for c, i in zip(text, self.encode(text), strict=True) if i == UNK]


def moses_language(code: str) -> str:
  """``code`` if it looks like a language code (``de``, ``deu``), else ``en``."""
  return code.lower() if code.isalpha() and len(code) in (2, 3) else "en"


class WordTokenizer:
  """Moses tokenization (``split="moses"``), or plain whitespace splitting
  (``split="whitespace"``: workdirs written before Moses was used)."""

  kind = "word"

  def __init__(self, vocab: Vocabulary, lang: str = "en", split: str = "moses"):
    self.vocab = vocab
    self.lang = lang
    self.split = split
    if split == "moses":
      self._tok = MosesTokenizer(lang)
      self._detok = MosesDetokenizer(lang)

  def words(self, text: str) -> list[str]:
    if self.split == "whitespace":
      return text.split()
    return self._tok.tokenize(text, escape=False)

  @classmethod
  def train(cls, texts: Iterable[str], min_count: int = 1, max_vocab: int = 0, lang: str = "en"):
    probe = cls(Vocabulary.from_symbols([]), lang)
    counts = collections.Counter(w for t in texts for w in probe.words(t))
    return cls(_from_counts(counts, min_count, max_vocab), lang)

  def encode(self, text: str) -> list[int]:
    return self.vocab.encode(self.words(text))

  def decode(self, ids) -> str:
    words = self.vocab.decode(ids)
    if self.split == "whitespace":
      return " ".join(words)
    return self._detok.detokenize(words, unescape=False)

  def unknown(self, text: str) -> list[str]:
    return [w for w in self.words(text) if self.vocab.encode([w])[0] == UNK]


def _from_counts(counts: collections.Counter, min_count: int, max_vocab: int) -> Vocabulary:
  """Most frequent first, ties by the token; specials never counted."""
  items = sorted(
    ((c, t) for t, c in counts.items() if c >= min_count and t not in SPECIALS),
    key=lambda ct: (-ct[0], ct[1]),
  )
  if max_vocab > 0:
    items = items[: max(0, max_vocab - len(SPECIALS))]
  return Vocabulary.from_symbols(t for _, t in items)


class SentencePieceTokenizer:
  """A SentencePiece model whose ids 0-3 are our PAD, BOS, EOS, UNK."""

  kind = "sentencepiece"

  def __init__(self, model_proto: bytes):
    self.model_proto = model_proto
    self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
    self.vocab = Vocabulary([self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())])

  @classmethod
  def train(
    cls, texts: Sequence[str], vocab_size: int, seed: int = 0, cache_dir: str | None = None
  ) -> SentencePieceTokenizer:
    """Trains on ``texts`` (or reuses the model cached for the same inputs)."""
    key = hashlib.sha256()
    key.update(f"v2 unigram identity {vocab_size} {seed}\n".encode())
    for t in texts:
      key.update(t.encode("utf-8") + b"\n")
    path = None
    if cache_dir:
      path = os.path.join(cache_dir, f"spm_{key.hexdigest()[:16]}.model")
      if os.path.exists(path):
        with open(path, "rb") as f:
          return cls(f.read())
    spm.set_random_generator_seed(seed)
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
      sentence_iterator=iter(texts),
      model_writer=out,
      vocab_size=vocab_size,
      model_type="unigram",
      hard_vocab_limit=False,
      character_coverage=1.0,
      pad_id=0,
      bos_id=1,
      eos_id=2,
      unk_id=3,
      pad_piece=SPECIALS[0],
      bos_piece=SPECIALS[1],
      eos_piece=SPECIALS[2],
      unk_piece=SPECIALS[3],
      input_sentence_size=1_000_000,
      normalization_rule_name="identity",
      remove_extra_whitespaces=False,
      shuffle_input_sentence=True,
      num_threads=1,
      minloglevel=2,
    )
    proto = out.getvalue()
    if path:
      os.makedirs(cache_dir, exist_ok=True)
      fileio.atomic_write_bytes(path, proto)
    return cls(proto)

  def encode(self, text: str) -> list[int]:
    return self.sp.encode(text)

  def decode(self, ids) -> str:
    """Pieces to text; each unknown piece is written ``<unk>``."""
    ids = np.asarray(ids).tolist()
    if EOS in ids:
      ids = ids[: ids.index(EOS)]
    ids = [i for i in ids if i >= UNK]
    out, run = [], []
    for i in ids + [UNK]:
      if i != UNK:
        run.append(i)
        continue
      if run:  # sp.decode drops a run's leading "▁"; put the space back
        lead = " " if out and self.sp.id_to_piece(run[0]).startswith("\u2581") else ""
        out.append(lead + self.sp.decode(run))
        run = []
      out.append(SPECIALS[UNK])
    return "".join(out[:-1])

  def unknown(self, text: str) -> list[str]:
    pieces = self.sp.encode(text, return_type="proto").pieces
    return [p.surface for p in pieces if p.id == UNK]


def save(tokenizer, workdir: str, side: str) -> dict:
  """Writes what rebuilds ``tokenizer`` into ``workdir``; returns its record."""
  record = {"kind": tokenizer.kind, "vocab": f"vocab_{side}.txt"}
  if tokenizer.kind == "word":
    record.update(split=tokenizer.split, lang=tokenizer.lang)
  tokenizer.vocab.save(os.path.join(workdir, record["vocab"]))
  if tokenizer.kind == "sentencepiece":
    record["model"] = f"spm_{side}.model"
    record["sha256"] = hashlib.sha256(tokenizer.model_proto).hexdigest()
    path = os.path.join(workdir, record["model"])
    fileio.atomic_write_bytes(path, tokenizer.model_proto)
  return record


def load(workdir: str, record: dict):
  """The tokenizer ``save`` wrote; checks the model's hash."""
  if record["kind"] == "sentencepiece":
    path = os.path.join(workdir, record["model"])
    with open(path, "rb") as f:
      proto = f.read()
    if hashlib.sha256(proto).hexdigest() != record["sha256"]:
      raise DataError(
        f"{path}: SentencePiece model does not match the hash recorded in tokenizer.json"
      )
    return SentencePieceTokenizer(proto)
  vocab = Vocabulary.load(os.path.join(workdir, record["vocab"]))
  if record["kind"] == "word":  # records without "split" predate Moses
    return WordTokenizer(vocab, record.get("lang", "en"), record.get("split", "whitespace"))
  return CharTokenizer(vocab)
