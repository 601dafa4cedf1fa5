"""Vocabularies: a list of token strings, stored as UTF-8 text (one per line).

Ids 0-3 are reserved: PAD (0), BOS (1), EOS (2), UNK (3). Never pickled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from attention_jax import fileio

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")


class Vocabulary:
  """Token strings <-> ids. ``tokens[i]`` is the string of id ``i``."""

  def __init__(self, tokens: Sequence[str]):
    if tuple(tokens[:4]) != SPECIALS:
      raise ValueError(f"a vocabulary must start with {SPECIALS}")
    self.tokens = list(tokens)
    self._index = {t: i for i, t in enumerate(self.tokens)}
    if len(self._index) != len(self.tokens):
      raise ValueError("a vocabulary has duplicate tokens")

  @classmethod
  def from_symbols(cls, symbols: Iterable[str]) -> Vocabulary:
    return cls([*SPECIALS, *symbols])

  def __len__(self) -> int:
    return len(self.tokens)

  def __eq__(self, other) -> bool:
    return isinstance(other, Vocabulary) and self.tokens == other.tokens

  def encode(self, symbols: Iterable[str]) -> list[int]:
    return [self._index.get(s, UNK) for s in symbols]

  def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
    """Ids -> token strings; with ``strip``, stops at EOS and drops PAD/BOS."""
    out = []
    for i in np.asarray(ids).tolist():
      if strip and i == EOS:
        break
      if strip and i in (PAD, BOS):
        continue
      out.append(self.tokens[i] if 0 <= i < len(self.tokens) else SPECIALS[UNK])
    return out

  def save(self, path: str) -> None:
    for t in self.tokens:
      if "\n" in t:
        raise ValueError(f"token {t!r} contains a newline")
    fileio.atomic_write_text(path, "".join(t + "\n" for t in self.tokens), newline="")

  @classmethod
  def load(cls, path: str) -> Vocabulary:
    # newline="": a token may be "\r" or "\u2028"; only "\n" ends a line.
    with open(path, encoding="utf-8", newline="") as f:
      return cls(f.read().split("\n")[:-1])
