"""Host memory: how glibc's malloc serves XLA's per-step buffer (docs/performance.md#host-memory).

XLA's CPU runtime allocates each execution's temporary buffer as one block, on
the worker thread that runs it; that thread's glibc arena serves a block above
32 MiB from a fresh ``mmap``, faulted in again every step. ``ATTENTION_JAX_MALLOC``:
``hugepages`` (training's default: glibc's ``glibc.malloc.hugetlb=1`` tunable,
read only at start, so the entry point restarts itself once), ``inline`` (the
benchmark's default: XLA computes on the calling thread, whose arena keeps freed
blocks), ``reuse`` (one arena keeps them; threads wait on it), ``glibc``. The
user's own ``GLIBC_TUNABLES``/``MALLOC_*`` are kept. No JAX import: entry points
call :func:`configure` before JAX's first computation.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

# mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
KEEP_FREED = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))  # no mmap'd blocks, no trimming
CHOICE = "ATTENTION_JAX_MALLOC"
CHOICES = {
  "hugepages": "transparent huge pages for glibc's mmap'd blocks",
  "inline": "XLA computes on the calling thread, whose arena keeps freed blocks",
  "reuse": "one arena, no mmap, no trim",
  "glibc": "glibc's settings",
}
TUNABLE = "glibc.malloc.hugetlb=1"
# Any of these in the environment means the user set malloc's parameters.
USER_SETTINGS = (
  "GLIBC_TUNABLES",
  "MALLOC_ARENA_MAX",
  "MALLOC_MMAP_MAX_",
  "MALLOC_MMAP_THRESHOLD_",
  "MALLOC_TRIM_THRESHOLD_",
  "MALLOC_TOP_PAD_",
)
INLINE = "glibc: XLA computes on the calling thread, whose arena keeps freed blocks (no mmap/trim)"
KEPT = "glibc: no mmap, no trim (XLA still dispatches asynchronously: set JAX_OPTIONS)"
HUGEPAGES = f"glibc: transparent huge pages for mmap'd blocks ({TUNABLE})"
REUSE = "glibc: one arena, no mmap, no trim (ATTENTION_JAX_MALLOC=reuse)"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
RESTARTED = "ATTENTION_JAX_MALLOC_RESTARTED"  # in the environment of a restarted process
# inline: XLA's CPU client runs each computation on the calling thread, which
# allocates its buffers (asynchronous dispatch runs them on a worker thread).
JAX_OPTIONS = {"jax_cpu_enable_async_dispatch": False}


def configure(
  environ: Mapping[str, str] = os.environ, default: str = "hugepages"
) -> dict[str, str] | None:
  """Applies ``ATTENTION_JAX_MALLOC`` (module docstring) and keeps what the
  process runs with in :data:`state`. Returns the environment to restart the
  process with (``hugepages`` before glibc has read the tunable), else None.
  A choice not in :data:`CHOICES`, or ``inline``/``reuse`` chosen beside the
  user's own malloc settings, is a ValueError; ``default`` (the choice when
  none is made) beside them keeps glibc's and JAX's settings."""
  global state
  choice = environ.get(CHOICE, default)
  if choice not in CHOICES:
    allowed = ", ".join(
      f"{name!r} ({what}{'; the default' if name == default else ''})"
      for name, what in CHOICES.items()
    )
    raise ValueError(f"{CHOICE}={choice!r}: allowed: {allowed}")
  user = _user_settings(environ)
  if user and CHOICE in environ and choice in ("inline", "reuse"):
    raise ValueError(f"{CHOICE}={choice} and {', '.join(user)} both set malloc: keep one")
  if choice == "reuse":
    state = reuse_freed_blocks()
    return None
  state = _initial_state(environ)  # what glibc was started with (after a restart too)
  if choice == "glibc" or user:
    return None
  if choice == "inline":
    keep_freed_blocks()  # the caller sets jax_options(), then calls jax_options_set()
    return None
  if state == HUGEPAGES:  # our own restart's child (or its child: a sweep's point)
    return None
  if why_not := _why_no_hugepages():
    state = f"glibc defaults ({why_not})"
  elif RESTARTED in environ:  # never twice: e.g. a privileged python drops GLIBC_TUNABLES
    state = "glibc defaults (GLIBC_TUNABLES did not reach the restarted process)"
  elif why_not := _why_no_restart():
    state = f"glibc defaults (not restarted: {why_not})"
  else:  # "glibc defaults" until the restart
    return {**environ, "GLIBC_TUNABLES": TUNABLE, RESTARTED: "1"}
  return None


def restart(environ: Mapping[str, str]) -> None:
  """Replaces this process by the same command line under ``environ``
  (``os.execve``: same pid; nothing of this process is kept). Returns only if
  that fails: the process goes on with glibc's settings, :data:`state` says why."""
  global state
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], dict(environ))
  except OSError as e:
    state = f"glibc defaults (the restart with {TUNABLE} failed: {e})"


def keep_freed_blocks() -> str:
  """The malloc half of ``inline``: no mmap'd blocks, no heap trimming (glibc's
  ``mallopt``), so an arena keeps what is freed; returns (and keeps in
  :data:`state`) what was done. The other half is :data:`JAX_OPTIONS` (this
  module imports no JAX): once they are set, :func:`jax_options_set`. Then the
  calling thread's arena — glibc's main arena for the main thread, the one that
  grows past 64 MiB without mmap — holds each step's block and reuses it."""
  global state
  libc = _glibc()
  if libc is None:
    state = "not glibc: unchanged"
  elif all(libc.mallopt(param, value) == 1 for param, value in KEEP_FREED):
    state = KEPT
  else:
    state = "glibc: mallopt refused"
  return state


def jax_options() -> dict[str, bool]:
  """The ``jax.config`` settings :func:`keep_freed_blocks` leaves to the caller,
  to be set before JAX's first computation (its CPU client reads them at start)."""
  return JAX_OPTIONS if state == KEPT else {}


def jax_options_set() -> None:
  """Records that :func:`jax_options` were set: the process computes ``inline``."""
  global state
  if state == KEPT:
    state = INLINE


def reuse_freed_blocks() -> str:
  """One malloc arena, no mmap'd blocks, no heap trimming (glibc's
  ``mallopt``); returns (and keeps in :data:`state`) what was done. Call it
  before the first JAX computation: threads pick their arena at their first
  allocation."""
  global state
  libc = _glibc()
  if libc is None:
    state = "not glibc: unchanged"
    return state
  ok = all(libc.mallopt(param, value) == 1 for param, value in ((M_ARENA_MAX, 1), *KEEP_FREED))
  state = REUSE if ok else "glibc: mallopt refused"
  return state


def _why_no_restart() -> str:
  """Why this process cannot simply run again ('' if it can)."""
  if sys.argv[0] in ("", "-"):
    return "the program came from standard input"
  if sys.gettrace() is not None or sys.getprofile() is not None:
    return "a debugger or profiler is attached"
  return ""


def _why_no_hugepages() -> str:
  """Why ``glibc.malloc.hugetlb=1`` would change nothing here ('' if it would)."""
  libc = _glibc()
  if libc is None:
    return "not glibc"
  libc.gnu_get_libc_version.restype = ctypes.c_char_p
  version = libc.gnu_get_libc_version().decode()
  if tuple(int(part) for part in version.split(".")[:2]) < (2, 35):
    return f"glibc {version} has no {TUNABLE.split('=')[0]}"
  try:
    modes = THP_MODE.read_text().split()
  except OSError:
    return f"no {THP_MODE}"
  mode = next((m.strip("[]") for m in modes if m.startswith("[")), "?")
  return "" if mode == "madvise" else f"transparent huge pages: {mode}"


def _glibc():
  """The C library if it is glibc (it has ``gnu_get_libc_version``), else None."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
  except (OSError, AttributeError, TypeError):
    return None
  return libc


def _user_settings(environ: Mapping[str, str]) -> list[str]:
  """The malloc settings in ``environ`` that the user made (not our restart's tunable)."""
  ours = RESTARTED in environ and environ.get("GLIBC_TUNABLES") == TUNABLE
  return [n for n in USER_SETTINGS if n in environ and not (ours and n == "GLIBC_TUNABLES")]


def _initial_state(environ: Mapping[str, str]) -> str:
  """What glibc was started with, read from the environment (no restart)."""
  user = [name for name in USER_SETTINGS if name in environ]
  if user == ["GLIBC_TUNABLES"] and environ["GLIBC_TUNABLES"] == TUNABLE:
    return f"glibc defaults ({why_not})" if (why_not := _why_no_hugepages()) else HUGEPAGES
  return f"glibc, the user's settings ({', '.join(user)})" if user else "glibc defaults"


#: What this process runs with (``env.json`` records it): read from the
#: environment at import, then set by :func:`configure` or :func:`reuse_freed_blocks`.
state = _initial_state(os.environ)
