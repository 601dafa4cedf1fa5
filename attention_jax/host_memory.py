"""Host memory: glibc's malloc set to reuse freed blocks (docs/performance.md#host-memory).

XLA's CPU runtime allocates the temporary buffer of every execution (all the
step's intermediates, one block) and frees it after. Under glibc's defaults a
block larger than a thread arena's heap comes from a fresh ``mmap`` and is
unmapped when freed, so each step faults in every page of it again.
:func:`reuse_freed_blocks` keeps such blocks: one arena for all threads, no
``mmap``'d blocks, no trimming of the heap (freed memory is kept by the process).
No JAX import here: the entry points call it before JAX starts its threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
# Any of these in the environment means the user chose malloc's settings.
USER_SETTINGS = (
  "GLIBC_TUNABLES",
  "MALLOC_ARENA_MAX",
  "MALLOC_MMAP_MAX_",
  "MALLOC_MMAP_THRESHOLD_",
  "MALLOC_TRIM_THRESHOLD_",
  "MALLOC_TOP_PAD_",
)
OPT_OUT = "ATTENTION_JAX_MALLOC"  # =default: leave glibc's defaults

#: What :func:`reuse_freed_blocks` did in this process (``env.json`` records it).
state = "glibc defaults (not set by attention_jax)"


def reuse_freed_blocks() -> str:
  """Sets one malloc arena, no mmap'd blocks and no heap trimming; returns
  what was done (also in :data:`state`). Left alone: not glibc, any of
  :data:`USER_SETTINGS` set, or ``ATTENTION_JAX_MALLOC=default`` (any other
  value is refused: ValueError). Call it
  before the first JAX computation: threads pick their arena at their first
  allocation, and JAX starts its CPU threads with its backend."""
  global state
  user = [name for name in USER_SETTINGS if name in os.environ]
  choice = os.environ.get(OPT_OUT)
  if choice not in (None, "default"):
    raise ValueError(f"{OPT_OUT}={choice!r}: allowed: 'default' (glibc's settings), or unset")
  if choice == "default":
    state = f"glibc defaults ({OPT_OUT}=default)"
  elif user:
    state = f"glibc, the user's settings ({', '.join(user)})"
  else:
    libc = _glibc()
    if libc is None:
      state = "not glibc: unchanged"
    else:
      ok = all(
        libc.mallopt(param, value) == 1
        for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
      )
      state = "glibc: one arena, no mmap, no trim" if ok else "glibc: mallopt refused"
  return state


def _glibc():
  """The C library if it is glibc (it has ``gnu_get_libc_version``), else None."""
  name = ctypes.util.find_library("c")
  try:
    libc = ctypes.CDLL(name)
    libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
  except (OSError, AttributeError, TypeError):
    return None
  return libc
