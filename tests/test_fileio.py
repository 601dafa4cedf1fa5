"""The atomic-write helper: a failed write leaves the old file and no temporary file."""

import json
import os

import pytest

from attention_jax import fileio


def _listing(d):
  return sorted(os.listdir(d))


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
  path = str(tmp_path / "a.json")
  fileio.atomic_write_json(path, {"old": 1})
  with pytest.raises(RuntimeError, match="midway"):
    with fileio.atomic_open(path, "w", encoding="utf-8") as f:
      f.write('{"new": ')
      f.flush()
      raise RuntimeError("midway")
  with pytest.raises(TypeError):  # json.dump fails after writing part of the object
    fileio.atomic_write_json(path, {"a": 1, "b": object()})
  assert json.loads(open(path, encoding="utf-8").read()) == {"old": 1}
  assert _listing(tmp_path) == ["a.json"]


def test_write_replaces_and_creates(tmp_path):
  path = str(tmp_path / "t.txt")
  fileio.atomic_write_text(path, "one\n")
  fileio.atomic_write_text(path, "two\n")
  fileio.atomic_write_bytes(str(tmp_path / "b.bin"), b"\x00\x01")
  assert open(path, encoding="utf-8").read() == "two\n"
  assert open(tmp_path / "b.bin", "rb").read() == b"\x00\x01"
  assert _listing(tmp_path) == ["b.bin", "t.txt"]
  # The usual permissions (the umask's), not a private temporary file's.
  mask = os.umask(0)
  os.umask(mask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
