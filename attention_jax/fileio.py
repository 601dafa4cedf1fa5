"""Atomic file writes and file hashes.

A reader of a file written here finds the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", **open_kwargs) -> Iterator[IO]:
  """A file to write that replaces ``path`` when the block ends without error.

  The data go to a hidden temporary file in ``path``'s directory (same
  filesystem, so ``os.replace`` is atomic), which is flushed and fsynced,
  renamed over ``path``, and the directory fsynced (the rename survives a
  crash). If the block raises, the temporary file is removed and ``path`` is
  left as it was.
  """
  directory = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(
    directory, f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp"
  )
  try:
    with open(tmp, mode, **open_kwargs) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise
  fsync_directory(directory)


def fsync_directory(directory: str) -> None:
  """Makes the directory's entries (a rename) durable."""
  fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def atomic_write_text(path: str, text: str, *, newline: str | None = None) -> None:
  with atomic_open(path, "w", encoding="utf-8", newline=newline) as f:
    f.write(text)


def atomic_write_bytes(path: str, data: bytes) -> None:
  with atomic_open(path, "wb") as f:
    f.write(data)


def atomic_write_json(path: str, obj: Any, **dump_kwargs) -> None:
  """``json.dump(obj, **dump_kwargs)`` into ``path``, atomically."""
  with atomic_open(path, "w", encoding="utf-8") as f:
    json.dump(obj, f, **dump_kwargs)


def sha256_file(path: str) -> str:
  """The SHA-256 of a file's bytes, read in 1 MiB blocks (hex digest)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()
