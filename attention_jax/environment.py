"""A run's environment on record: ``WORKDIR/env.json``.

``env.json`` is a JSON list with one record per start of the run (the first
start and every resume, appended): Python and library versions, the backend,
device kinds and count, process count, host name, the git commit of the code
and whether its tracked files had changes (when the package is in a git
checkout), the full command line, the start time and the host's malloc
settings (``host_malloc``, :mod:`attention_jax.host_memory`). The first process
writes it, when training is about to start. ``evaluate`` and ``compare`` name the
commit of each workdir (:func:`code_version`).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from typing import Any

import jax

from attention_jax import fileio, host_memory

ENV_NAME = "env.json"
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy")


def env_path(workdir: str) -> str:
  return os.path.join(workdir, ENV_NAME)


def _version(dist: str) -> str | None:
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def _git(args: list[str], cwd: str) -> str | None:
  try:
    out = subprocess.run(
      ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    )
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout


def git_state(path: str | None = None) -> dict[str, Any]:
  """``{"commit": sha or None, "dirty": bool or None}`` of the git checkout
  holding ``path`` (default: this package); dirty = tracked files changed."""
  path = path or os.path.dirname(os.path.abspath(__file__))
  commit = _git(["rev-parse", "HEAD"], path)
  if commit is None:
    return {"commit": None, "dirty": None}
  status = _git(["status", "--porcelain", "--untracked-files=no"], path)
  return {"commit": commit.strip(), "dirty": None if status is None else bool(status.strip())}


def describe(argv: list[str] | None = None) -> dict[str, Any]:
  """This process's environment as one JSON-ready record."""
  devices = jax.devices()
  return {
    "start_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "command": [sys.executable, *(sys.argv if argv is None else argv)],
    "python": platform.python_version(),
    "libraries": {name: _version(name) for name in LIBRARIES},
    "backend": jax.default_backend(),
    "device_kinds": sorted({d.device_kind for d in devices}),
    "device_count": len(devices),
    "process_count": jax.process_count(),
    "host": socket.gethostname(),
    "host_malloc": host_memory.state,
    **git_state(),
  }


def read(workdir: str) -> list[dict[str, Any]]:
  """The records of ``env.json`` (oldest first); [] if there is none or it is
  unreadable."""
  try:
    with open(env_path(workdir), encoding="utf-8") as f:
      records = json.load(f)
  except (OSError, ValueError):
    return []
  return records if isinstance(records, list) else []


def append(workdir: str, record: dict[str, Any] | None = None) -> dict[str, Any]:
  """Appends ``record`` (default: :func:`describe`) to ``env.json``, atomically."""
  record = describe() if record is None else record
  records = [*read(workdir), record]
  fileio.atomic_write_text(env_path(workdir), json.dumps(records, indent=2) + "\n")
  return record


def code_version(workdir: str) -> str | None:
  """The commit of the code that started ``workdir`` (``"<sha>"``, ``"<sha>
  (dirty)"``; several distinct ones, oldest first, joined by ``" then "`` when
  a resume ran other code), or None when no start has a git record."""
  seen: list[str] = []
  for r in read(workdir):
    if r.get("commit"):
      v = r["commit"] + (" (dirty)" if r.get("dirty") else "")
      if not seen or seen[-1] != v:
        seen.append(v)
  return " then ".join(seen) or None
