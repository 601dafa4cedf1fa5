"""Host memory: how glibc's malloc serves XLA's per-step buffer (docs/performance.md#host-memory).

XLA's CPU runtime allocates each execution's temporary buffer as one block and
frees it after. Dispatched asynchronously (JAX's default) it does so on a worker
thread, whose glibc arena serves a block above 32 MiB from a fresh ``mmap``, so
every step faults every 4 KiB page of it in again. ``ATTENTION_JAX_MALLOC``:
``hugepages`` (the default for training) sets glibc's ``glibc.malloc.hugetlb=1``
tunable (its ``mmap``'d blocks get transparent huge pages: 512 times fewer
faults), which glibc reads only at start, so the entry point restarts itself
once (``exec``); ``inline`` (the benchmark's default) runs each computation on
the thread that calls it (``jax_cpu_enable_async_dispatch`` off), so the block
comes from that thread's arena — glibc's main arena for the main thread —,
which keeps its freed blocks (no ``mmap``, no trim): each step reuses the last
one's block, but Python no longer runs ahead of the computation; ``reuse``
keeps the block with one arena for all threads (they wait on it); ``glibc``
leaves glibc's and JAX's settings. The user's own ``GLIBC_TUNABLES``/``MALLOC_*``
are kept. JAX is imported only for ``inline``, and no computation runs here:
entry points call :func:`configure` first.
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
HUGEPAGES = f"glibc: transparent huge pages for mmap'd blocks ({TUNABLE})"
REUSE = "glibc: one arena, no mmap, no trim (ATTENTION_JAX_MALLOC=reuse)"
THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
RESTARTED = "ATTENTION_JAX_MALLOC_RESTARTED"  # in the environment of a restarted process


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
  user = [name for name in USER_SETTINGS if name in environ]
  if user and CHOICE in environ and choice in ("inline", "reuse"):
    raise ValueError(f"{CHOICE}={choice} and {', '.join(user)} both set malloc: keep one")
  if choice == "reuse":
    state = reuse_freed_blocks()
    return None
  state = _initial_state(environ)  # what glibc was started with (after a restart too)
  if choice == "glibc" or user:
    return None
  if choice == "inline":
    state = compute_inline()
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


def compute_inline() -> str:
  """Makes XLA's CPU client run each computation on the thread that calls it
  (``jax_cpu_enable_async_dispatch`` off; it allocates the temporary buffer
  there) and glibc keep freed blocks in their arena (``mallopt``: no mmap'd
  blocks, no heap trimming); returns (and keeps in :data:`state`) what was
  done. Call it before JAX's first computation: the CPU client reads the flag
  when it starts."""
  global state
  libc = _glibc()
  if libc is None:
    state = "not glibc: unchanged"
    return state
  import jax  # only this choice needs JAX
  from jax._src import xla_bridge

  if xla_bridge.backends_are_initialized():
    state = "glibc defaults (not inline: JAX had already computed; call it before that)"
    return state
  if not all(libc.mallopt(param, value) == 1 for param, value in KEEP_FREED):
    state = "glibc: mallopt refused"
    return state
  jax.config.update("jax_cpu_enable_async_dispatch", False)
  state = INLINE
  return state


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


def _initial_state(environ: Mapping[str, str]) -> str:
  """What glibc was started with, read from the environment (no restart)."""
  user = [name for name in USER_SETTINGS if name in environ]
  if user == ["GLIBC_TUNABLES"] and environ["GLIBC_TUNABLES"] == TUNABLE:
    return f"glibc defaults ({why_not})" if (why_not := _why_no_hugepages()) else HUGEPAGES
  return f"glibc, the user's settings ({', '.join(user)})" if user else "glibc defaults"


#: What this process runs with (``env.json`` records it): read from the
#: environment at import, then set by :func:`configure` or :func:`reuse_freed_blocks`.
state = _initial_state(os.environ)
