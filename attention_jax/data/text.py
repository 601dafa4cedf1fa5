"""Character-level language modelling on a local UTF-8 text file (``data.task = "text"``).

The vocabulary is the training text's characters (sorted, after the four reserved ids; an
unseen character maps to UNK), stored as text: a printable character is itself, any other
is written ``U+000A``, never confused with a real character (one code point long).
Training windows of ``data.max_length + 1`` characters at offsets drawn from ``(seed,
index)``; evaluation on consecutive windows of ``data.eval_path`` or the held-out last 10%.
Documented in docs/data.md#character-level-text-text-for-gpt.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from attention_jax.config_fields import context
from attention_jax.data.batching import IndexedIterator
from attention_jax.data.vocab import PAD, Vocabulary
from attention_jax.errors import ConfigError

EVAL_FRACTION = 0.1


def char_token(c: str) -> str:
  return c if c.isprintable() else f"U+{ord(c):04X}"


def token_char(t: str) -> str:
  return chr(int(t[2:], 16)) if len(t) > 1 and t.startswith("U+") else t


def read_text(path: str, key: str) -> str:
  """The file's text; one-line errors naming the file for missing/empty/bad UTF-8."""
  if not path:
    raise ConfigError(
      f"config key '{key}' is empty: data.task='text' needs a UTF-8 "
      f"text file (--config.{key}=FILE.txt)"
    )
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{key} '{path}': file not found")
  with open(path, "rb") as f:
    raw = f.read()
  try:
    text = raw.decode("utf-8")
  except UnicodeDecodeError as e:
    line = raw[: e.start].count(b"\n") + 1
    raise ConfigError(f"{key} '{path}': not valid UTF-8 (byte {e.start}, line {line})") from None
  if not text:
    raise ConfigError(f"{key} '{path}': file is empty")
  return text


def char_vocabulary(text: str) -> Vocabulary:
  return Vocabulary.from_symbols(char_token(c) for c in sorted(set(text)))


def encode(vocab: Vocabulary, text: str) -> np.ndarray:
  return np.asarray(vocab.encode(char_token(c) for c in text), np.int32)


def decode(vocab: Vocabulary, ids) -> str:
  return "".join(token_char(t) for t in vocab.decode(ids))


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextConfig:
  """The ``data.*`` keys the ``text`` task reads."""

  task: str  # text
  seed: int = context()  # the run's seed: training batch i is drawn from (seed, i)
  batch_size: int = context()  # train.batch_size
  train_path: str = ""  # the UTF-8 training text
  eval_path: str = ""  # held-out text ("": the last 10% of train_path)
  max_length: int = 64  # characters per window
  eval_examples: int = 1000  # most evaluation windows


class TextLMTask:
  """Next-character prediction (the task protocol of :mod:`.batching`).

  Given a ``workdir`` that holds the run's ``vocab_tgt.txt`` (a trained run),
  the vocabulary comes from there and the text is read only when batches are
  needed: sampling from a trained model does not read the training text.
  """

  objective = "lm"
  config_class = TextConfig

  def __init__(self, settings: TextConfig, workdir: str | None = None):
    self.settings = settings
    self.seed = settings.seed
    self.window = settings.max_length
    self.batch_size = settings.batch_size
    self.eval_examples = settings.eval_examples
    self._ids = None
    saved = os.path.join(workdir, "vocab_tgt.txt") if workdir else None
    if saved and os.path.exists(saved):
      self.src_vocab = self.tgt_vocab = Vocabulary.load(saved)
    else:
      self.src_vocab = self.tgt_vocab = char_vocabulary(self._texts()[0])
      self._encode()  # bad files fail now, before any work

  def _texts(self) -> tuple[str, str]:
    d = self.settings
    text = read_text(d.train_path, "data.train_path")
    if d.eval_path:
      return text, read_text(d.eval_path, "data.eval_path")
    cut = int(len(text) * (1 - EVAL_FRACTION))
    return text[:cut], text[cut:]

  def _encode(self) -> tuple[np.ndarray, np.ndarray]:
    """(training ids, evaluation ids), read once."""
    if self._ids is None:
      d = self.settings
      self._ids = tuple(encode(self.src_vocab, t) for t in self._texts())
      for name, ids, path in (
        ("training", self._ids[0], d.train_path),
        ("evaluation", self._ids[1], d.eval_path or d.train_path),
      ):
        if len(ids) < self.window + 1:
          raise ConfigError(
            f"data.train_path '{path}': the {name} text has {len(ids)} "
            f"characters, fewer than data.max_length + 1 = {self.window + 1}"
          )
    return self._ids

  @property
  def train_ids(self) -> np.ndarray:
    return self._encode()[0]

  @property
  def eval_ids(self) -> np.ndarray:
    return self._encode()[1]

  def train_batch(self, index: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([self.seed, 0, index])
    starts = rng.integers(0, len(self.train_ids) - self.window, size=self.batch_size)
    w = self.train_ids[starts[:, None] + np.arange(self.window + 1)]  # (B, L+1)
    return {"inputs": w[:, :-1], "targets": w[:, 1:]}

  def train_iterator(self) -> IndexedIterator:
    return IndexedIterator(self.train_batch)

  def count_tokens(self, batch) -> int:
    return int((batch["targets"] != PAD).sum())

  def eval_set(self, split: str = "eval") -> dict[str, np.ndarray]:
    """Consecutive windows of the held-out text (at most ``data.eval_examples``)."""
    del split
    L = self.window
    n = min((len(self.eval_ids) - 1) // L, self.eval_examples)
    starts = np.arange(n) * L
    w = self.eval_ids[starts[:, None] + np.arange(L + 1)]
    return {"inputs": w[:, :-1], "targets": w[:, 1:]}
