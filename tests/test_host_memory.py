"""attention_jax.host_memory: with ATTENTION_JAX_MALLOC=reuse a step's temporary
buffer is not faulted in again every call; with glibc's defaults it is (so the
test can fail)."""

import json
import os
import platform
import subprocess
import sys

import pytest
from conftest import ROOT

from attention_jax import host_memory

# A fresh process each (malloc's arenas are chosen when threads first allocate):
# a jitted function whose temporary buffer is larger than a thread arena's
# heap (64 MiB), called a few times; prints its temp size and the minor page
# faults of each call once warm, sorted.
SCRIPT = r"""
import json, resource, sys
from attention_jax import host_memory
state = host_memory.configure()
import jax, jax.numpy as jnp
x = jnp.arange(4096 * 4096, dtype=jnp.float32).reshape(4096, 4096) / 1e7  # 64 MiB
w = jnp.ones((4096, 8), jnp.float32)
f = jax.jit(lambda x: (jnp.cumsum(x, axis=0) @ w, jnp.cumsum(jnp.sin(x), axis=1) @ w))
compiled = f.lower(x).compile()
temp = compiled.memory_analysis().temp_size_in_bytes
for _ in range(6):
  jax.block_until_ready(compiled(x))
faults = []
for _ in range(9):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(compiled(x))
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"state": state, "temp": temp, "faults": sorted(faults)}))
"""


def _run(extra_env: dict) -> dict:
  env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
  env.pop("ATTENTION_JAX_MALLOC", None)
  env.update(extra_env)
  out = subprocess.run(
    [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
  )
  assert out.returncode == 0, out.stderr[-2000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
  platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc", reason="glibc only"
)
def test_freed_blocks_are_reused_and_the_defaults_are_not():
  kept = _run({"ATTENTION_JAX_MALLOC": "reuse"})
  default = _run({})
  pages = kept["temp"] / 4096
  assert kept["temp"] > 64 * 2**20, kept  # the case this is about: above an arena's heap
  assert kept["state"] == host_memory.REUSE
  assert default["state"] == "glibc defaults"
  assert min(default["faults"]) > 0.5 * pages, (default, pages)  # every call faults it in
  # most calls fault nothing (the heap can still grow once while calls overlap)
  assert kept["faults"][4] < 0.05 * pages, (kept, pages)


def test_choices_and_the_users_own_settings(monkeypatch):
  monkeypatch.setattr(host_memory, "state", host_memory.state)
  for name in host_memory.USER_SETTINGS:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.delenv("ATTENTION_JAX_MALLOC", raising=False)
  assert host_memory.configure() == "glibc defaults"
  monkeypatch.setenv("ATTENTION_JAX_MALLOC", "default")
  assert host_memory.configure() == "glibc defaults"
  monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
  assert host_memory.configure() == "glibc, the user's settings (MALLOC_ARENA_MAX)"
  monkeypatch.setenv("ATTENTION_JAX_MALLOC", "reuse")
  with pytest.raises(ValueError, match="reuse and MALLOC_ARENA_MAX both set malloc: keep one"):
    host_memory.configure()
  monkeypatch.setenv("ATTENTION_JAX_MALLOC", "off")
  with pytest.raises(ValueError, match="ATTENTION_JAX_MALLOC='off': allowed: 'default'"):
    host_memory.configure()


def test_a_bad_choice_is_one_line_before_any_work(tmp_path):
  env = {**os.environ, "ATTENTION_JAX_MALLOC": "off"}
  workdir = tmp_path / "never_started"
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.run",
      "--config=configs/quickstart.py",
      f"--workdir={workdir}",
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    cwd=ROOT,
  )
  assert p.returncode == 2
  assert p.stderr.strip().splitlines() == [
    "error: ATTENTION_JAX_MALLOC='off': allowed: 'default' (glibc's settings), 'reuse'"
  ]
  assert not workdir.exists()
