"""One run per workdir: an exclusive ``flock(2)`` on ``WORKDIR/run.lock``.

Two training processes on one workdir would overwrite each other's checkpoints (orbax does
not lock a directory). The kernel drops the lock when its process dies, so a lock left by a
killed process is taken over at once; the file names the holder (PID, host, start time,
command). ``flock`` is per machine (docs/reliability.md). This module imports no JAX, so a
test can hold a lock from a cheap process.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time

from absl import logging

from attention_jax.errors import ConfigError, WorkdirLockedError

LOCK_NAME = "run.lock"


def _read_holder(fd: int) -> dict:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    return json.loads(os.read(fd, 65536).decode("utf-8") or "{}")
  except (OSError, ValueError):
    return {}


def _pid_alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, TypeError, ValueError):
    return True
  return True


def checked_workdir(workdir: str | None) -> str:
  """``workdir`` as an absolute path; ConfigError (one line) for an empty or
  blank one (it would be the current directory) or the filesystem root."""
  if workdir is None or not str(workdir).strip():
    what = "blank" if workdir else "empty"
    raise ConfigError(
      f"--workdir is {what}: give the run its own directory (--workdir /tmp/run); "
      "an empty one would write into the current directory"
    )
  path = os.path.abspath(workdir)
  if os.path.dirname(path) == path:
    raise ConfigError(
      f"--workdir {workdir!r} is the filesystem root: give the run its own directory"
    )
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f"--workdir {path} exists and is not a directory")
  return path


class WorkdirLock:
  """``with WorkdirLock(workdir):`` holds ``workdir`` for this process."""

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_NAME)
    self._fd: int | None = None

  def acquire(self) -> WorkdirLock:
    if self._fd is not None:
      raise RuntimeError(f"{self.path} is already held by this object")
    os.makedirs(self.workdir, exist_ok=True)
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        who = (
          f"process {holder.get('pid', '?')} on {holder.get('host', '?')}"
          f" (started {holder.get('started', '?')})"
        )
        raise WorkdirLockedError(
          f"workdir {self.workdir} is in use by {who}; lock file {self.path}. "
          "Wait for that run to end or stop it; two runs on one workdir "
          "would overwrite each other's checkpoints"
        ) from None
      # A releasing process unlinks the file after we opened it: retry on the
      # file now at the path, else two processes could each hold a lock.
      try:
        same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        same = False
      if not same:
        os.close(fd)
        continue
      break
    old = _read_holder(fd)
    if old.get("pid") is not None:
      state = "alive" if _pid_alive(old["pid"]) else "dead"
      logging.warning(
        "taking over the stale lock %s of process %s on %s (%s, not holding it)",
        self.path,
        old.get("pid"),
        old.get("host", "?"),
        state,
      )
    me = {
      "pid": os.getpid(),
      "host": socket.gethostname(),
      "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
      "argv": sys.argv[:8],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(me) + "\n").encode("utf-8"))
    os.fsync(fd)
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.unlink(self.path)  # unlink while holding: see the inode check above
    except FileNotFoundError:
      pass
    os.close(self._fd)
    self._fd = None

  def __enter__(self) -> WorkdirLock:
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
