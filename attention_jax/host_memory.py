"""Host memory: glibc malloc set to reuse freed blocks, if asked (docs/performance.md#host-memory).

XLA's CPU runtime allocates the temporary buffer of every execution (all the
step's intermediates, one block) and frees it after. Under glibc's defaults a
block larger than a thread arena's heap comes from a fresh ``mmap`` and is
unmapped when freed, so each step faults in every page of it again.
``ATTENTION_JAX_MALLOC=reuse`` keeps such blocks: one arena for all threads, no
``mmap``'d blocks, no heap trimming. The one arena costs small, fast steps
(threads wait on it), hence opt-in. No JAX import: entry points call
:func:`configure` before JAX starts its threads.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (glibc malloc.h).
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
CHOICE = "ATTENTION_JAX_MALLOC"  # "default" (or unset): glibc's settings; "reuse"
# Any of these in the environment means the user set malloc's parameters.
USER_SETTINGS = (
  "GLIBC_TUNABLES",
  "MALLOC_ARENA_MAX",
  "MALLOC_MMAP_MAX_",
  "MALLOC_MMAP_THRESHOLD_",
  "MALLOC_TRIM_THRESHOLD_",
  "MALLOC_TOP_PAD_",
)
REUSE = "glibc: one arena, no mmap, no trim (ATTENTION_JAX_MALLOC=reuse)"

#: What :func:`configure` did in this process (``env.json`` records it).
state = "glibc defaults"


def configure() -> str:
  """Applies ``ATTENTION_JAX_MALLOC``: unset or ``default`` leaves glibc's
  settings; ``reuse`` calls :func:`reuse_freed_blocks`; anything else is a
  ValueError, as is ``reuse`` beside the user's own ``MALLOC_*`` settings.
  Returns (and keeps in :data:`state`) what the process runs with."""
  global state
  choice = os.environ.get(CHOICE, "default")
  if choice not in ("default", "reuse"):
    raise ValueError(f"{CHOICE}={choice!r}: allowed: 'default' (glibc's settings), 'reuse'")
  user = [name for name in USER_SETTINGS if name in os.environ]
  if choice == "reuse" and user:
    raise ValueError(f"{CHOICE}=reuse and {', '.join(user)} both set malloc: keep one")
  if choice == "reuse":
    return reuse_freed_blocks()
  state = f"glibc, the user's settings ({', '.join(user)})" if user else "glibc defaults"
  return state


def reuse_freed_blocks() -> str:
  """One malloc arena, no mmap'd blocks, no heap trimming (glibc's
  ``mallopt``); returns what was done. Call it before the first JAX
  computation: threads pick their arena at their first allocation."""
  global state
  libc = _glibc()
  if libc is None:
    state = "not glibc: unchanged"
  else:
    ok = all(
      libc.mallopt(param, value) == 1
      for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))
    )
    state = REUSE if ok else "glibc: mallopt refused"
  return state


def _glibc():
  """The C library if it is glibc (it has ``gnu_get_libc_version``), else None."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.gnu_get_libc_version  # noqa: B018 - only glibc has it
  except (OSError, AttributeError, TypeError):
    return None
  return libc
