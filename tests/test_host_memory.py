"""attention_jax.host_memory: a step's temporary buffer larger than glibc's mmap
threshold is faulted in page by page every call under glibc's settings (so the
test can fail), in 2 MiB pages with ``hugepages`` (the default, through a
restart), not at all with ``inline`` (the benchmark's default) or ``reuse``."""

import json
import os
import platform
import subprocess
import sys

import pytest
from conftest import ROOT

from attention_jax import host_memory

# A fresh process each (glibc reads its tunables at start; malloc's arenas are
# chosen when threads first allocate), started through the entry points' runner
# (``cli.run``: the choice, a restart if asked, JAX's options): a jitted
# function whose temporary buffer is larger than a thread arena's heap
# (64 MiB), called a few times; prints its pid at each start, then its state,
# temp size, async dispatch and the minor page faults of each call once warm.
SCRIPT = r"""
import json, os, resource
from experiments import cli
print(os.getpid(), flush=True)


def main(argv):
  import jax, jax.numpy as jnp
  from attention_jax import host_memory

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
  asynchronous = jax.config.values["jax_cpu_enable_async_dispatch"]
  result = {"state": host_memory.state, "temp": temp, "async": asynchronous}
  print(json.dumps({**result, "faults": sorted(faults)}))


cli.run(main)
"""


def _plain_env() -> dict:
  """This environment without any malloc setting or choice."""
  names = ("MALLOC_", "GLIBC_TUNABLES", host_memory.CHOICE)
  return {k: v for k, v in os.environ.items() if not k.startswith(names)}


def _run(extra_env: dict) -> tuple[dict, list[str]]:
  """The script's result and the pids it printed at each start."""
  env = {**_plain_env(), **extra_env}
  out = subprocess.run(
    [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
  )
  assert out.returncode == 0, out.stderr[-2000:]
  *pids, result = out.stdout.strip().splitlines()
  return json.loads(result), pids


glibc_only = pytest.mark.skipif(
  platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc", reason="glibc only"
)


@glibc_only
def test_a_large_temp_is_faulted_in_every_call_under_glibcs_settings_only():
  plain, pids = _run({"ATTENTION_JAX_MALLOC": "glibc"})
  assert len(pids) == 1 and plain["state"] == "glibc defaults" and plain["async"]
  pages = plain["temp"] / 4096
  assert plain["temp"] > 64 * 2**20, plain  # the case this is about: above an arena's heap
  assert min(plain["faults"]) > 0.5 * pages, (plain, pages)  # every call faults it in
  for choice, state in (("inline", host_memory.INLINE), ("reuse", host_memory.REUSE)):
    kept, pids = _run({"ATTENTION_JAX_MALLOC": choice})
    assert len(pids) == 1 and kept["state"] == state
    assert kept["async"] == (choice != "inline")  # inline: XLA computes on the calling thread
    # most calls fault nothing (the heap can still grow once while calls overlap)
    assert kept["faults"][4] < 0.05 * pages, (kept, pages)


@glibc_only
def test_hugepages_is_the_default_and_restarts_once_in_the_same_process():
  why_not = host_memory._why_no_hugepages()
  if why_not:
    pytest.skip(f"hugepages changes nothing on this machine: {why_not}")
  huge, pids = _run({})
  assert huge["state"] == host_memory.HUGEPAGES
  assert len(pids) == 2 and pids[0] == pids[1]  # one restart, exec: the same pid
  pages = huge["temp"] / 4096
  assert huge["faults"][4] < 0.05 * pages, (huge, pages)  # 2 MiB pages: 512 times fewer
  # set by the user the same way: no restart, the same state (whatever the choice)
  again, pids = _run({"GLIBC_TUNABLES": host_memory.TUNABLE})
  assert len(pids) == 1 and again["state"] == host_memory.HUGEPAGES


def test_choices_and_the_users_own_settings(monkeypatch):
  """In-process, with what would change this process (mallopt, JAX's dispatch,
  the restart) replaced: which choice does what, and when."""
  monkeypatch.setattr(host_memory, "state", host_memory.state)
  inlined = []  # mallopt calls

  class Libc:
    def mallopt(self, param, value):
      inlined.append((param, value))
      return 1

  monkeypatch.setattr(host_memory, "_glibc", Libc)
  monkeypatch.setattr(host_memory, "_why_no_hugepages", lambda: "")
  monkeypatch.setattr(host_memory, "_why_no_restart", lambda: "")
  huge = {"ATTENTION_JAX_MALLOC": "hugepages"}
  tunable = {"GLIBC_TUNABLES": host_memory.TUNABLE, host_memory.RESTARTED: "1"}
  assert host_memory.configure(huge) == {**huge, **tunable}
  assert host_memory.configure({}) == tunable  # the default
  assert host_memory.state == "glibc defaults"  # until the restart
  inline = {"ATTENTION_JAX_MALLOC": "inline"}
  keep = list(host_memory.KEEP_FREED)
  # the benchmark's default; and a process started by our restarted one (its tunable is ours)
  for environ, default in ((inline, "hugepages"), ({}, "inline"), ({**inline, **tunable}, "")):
    assert host_memory.configure(environ, default=default) is None
    assert host_memory.state == host_memory.KEPT  # until JAX's half is set
    assert host_memory.jax_options() == {"jax_cpu_enable_async_dispatch": False}
    host_memory.jax_options_set()
    assert host_memory.state == host_memory.INLINE and host_memory.jax_options() == {}
  assert inlined == keep * 3
  assert host_memory.configure(tunable) is None  # our restart's child: no second one
  assert host_memory.state == host_memory.HUGEPAGES
  # never a second restart, e.g. when a privileged python drops GLIBC_TUNABLES
  assert host_memory.configure({**huge, host_memory.RESTARTED: "1"}) is None
  assert host_memory.state == "glibc defaults (GLIBC_TUNABLES did not reach the restarted process)"
  monkeypatch.setattr(host_memory, "_why_no_restart", lambda: "a debugger or profiler is attached")
  assert host_memory.configure(huge) is None
  assert host_memory.state == "glibc defaults (not restarted: a debugger or profiler is attached)"
  restarted = {**huge, "GLIBC_TUNABLES": host_memory.TUNABLE}
  assert host_memory.configure(restarted) is None
  assert host_memory.state == host_memory.HUGEPAGES
  assert host_memory.configure({"ATTENTION_JAX_MALLOC": "glibc"}) is None
  assert host_memory.state == "glibc defaults"
  monkeypatch.setattr(host_memory, "_why_no_hugepages", lambda: "transparent huge pages: never")
  for environ in (huge, restarted):  # e.g. a sweep's job on a node without them
    assert host_memory.configure(environ) is None
    assert host_memory.state == "glibc defaults (transparent huge pages: never)"
  for users in ({"MALLOC_ARENA_MAX": "4"}, {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}):
    name = next(iter(users))
    for choice in ({}, huge, {"ATTENTION_JAX_MALLOC": "glibc"}):  # the default among them
      for default in ("hugepages", "inline"):
        assert host_memory.configure({**choice, **users}, default=default) is None
        assert host_memory.state == f"glibc, the user's settings ({name})"
    for choice in ("inline", "reuse"):
      with pytest.raises(ValueError, match=f"{choice} and {name} both set malloc: keep one"):
        host_memory.configure({"ATTENTION_JAX_MALLOC": choice, **users})
  assert inlined == keep * 3  # never beside the user's settings
  with pytest.raises(ValueError, match="ATTENTION_JAX_MALLOC='default': allowed: 'hugepages'"):
    host_memory.configure({"ATTENTION_JAX_MALLOC": "default"})


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
    "error: ATTENTION_JAX_MALLOC='off': allowed: 'hugepages' (transparent huge pages for"
    " glibc's mmap'd blocks; the default), 'inline' (XLA computes on the calling thread, whose"
    " arena keeps freed blocks), 'reuse' (one arena, no mmap, no trim), 'glibc' (glibc's"
    " settings)"
  ]
  assert not workdir.exists()


def test_a_failed_restart_goes_on_with_glibcs_settings_and_says_so(monkeypatch):
  monkeypatch.setattr(host_memory, "state", "glibc defaults")

  def refuse(*args):
    raise PermissionError(13, "Permission denied")

  monkeypatch.setattr(host_memory.os, "execve", refuse)
  host_memory.restart({"GLIBC_TUNABLES": host_memory.TUNABLE})
  assert host_memory.state == (
    "glibc defaults (the restart with glibc.malloc.hugetlb=1 failed: [Errno 13] Permission denied)"
  )


@glibc_only
def test_the_state_without_configure():
  """A process that does not start through an entry point (a notebook) records
  what glibc was started with, and what ``keep_freed_blocks`` or
  ``reuse_freed_blocks`` did; ``jax_options`` names JAX's half of ``inline``."""
  show = "from attention_jax import host_memory as h; print(h.state)"
  reuse = show.replace("print(", "h.reuse_freed_blocks(); print(")
  inline = show.replace("print(h.state)", "h.keep_freed_blocks(); print(h.state, h.jax_options())")
  kept = f"{host_memory.KEPT} {host_memory.JAX_OPTIONS}"
  env = _plain_env()
  why_not = host_memory._why_no_hugepages()
  huge = f"glibc defaults ({why_not})" if why_not else host_memory.HUGEPAGES
  for code, extra, expected in (
    (show, {}, "glibc defaults"),
    (show, {"GLIBC_TUNABLES": host_memory.TUNABLE}, huge),
    (show, {"MALLOC_ARENA_MAX": "2"}, "glibc, the user's settings (MALLOC_ARENA_MAX)"),
    (reuse, {}, host_memory.REUSE),
    (inline, {}, kept),
  ):
    out = subprocess.run(
      [sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == expected, out.stderr[-1000:]


@glibc_only
def test_the_benchmark_computes_inline_by_default(tmp_path):
  """``experiments.benchmark`` waits for every call it times: its default is
  ``inline`` (the ``machine:`` line and the JSON say so), training's is not."""
  env = _plain_env()
  out = tmp_path / "bench.json"
  command = ["experiments.benchmark", "--suite=attention", "--quick", f"--json={out}"]
  p = subprocess.run(
    [sys.executable, "-m", *command],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    cwd=ROOT,
  )
  assert p.returncode == 0, p.stderr[-2000:]
  assert f"malloc: {host_memory.INLINE}; clock: wall" in p.stdout
  assert host_memory.INLINE in json.loads(out.read_text())["machine"]
