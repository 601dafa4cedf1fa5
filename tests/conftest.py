"""Shared test helpers: the repository root, the tiny config, and one small
sweep run by the local launcher (shared by the tests of both launchers)."""

import hashlib
import os
import textwrap

import pytest

from attention_jax.testing import tiny_config  # noqa: F401 - tests import it from here

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def make_config():
  return tiny_config


# A sweep of 6-step points: two that train, one whose loss becomes NaN, one
# killed as by the kernel's OOM killer (it dies as its config loads).
# ``sweep("two")``, ``sweep("one")`` and ``sweep("debug")`` are subsets.
SWEEP_CONFIG = textwrap.dedent("""
    import sys
    if any("hidden_size=13" in a for a in sys.argv):
      import os, signal   # what the kernel's OOM killer does to a process
      os.kill(os.getpid(), signal.SIGKILL)
    from attention_jax.testing import tiny_config

    def get_config(arg=None):
      c = tiny_config()
      c.train.steps = 6
      c.train.warmup_steps = 1
      c.train.log_every_steps = 3
      c.eval.every_steps = 6
      c.checkpoint.every_steps = 6
      c.data.eval_examples = 32
      return c

    POINTS = {
        None: [{"model.hidden_size": 8}, {"model.hidden_size": 12},
               {"model.hidden_size": 8, "train.learning_rate": 1e30},  # NaN
               {"model.hidden_size": 13}],                             # OOM
        "two": [{"model.hidden_size": 8}, {"model.hidden_size": 12}],
        "one": [{"model.hidden_size": 8}],
        "debug": [{"model.hidden_size": 8}, {"model.hidden_size": 13}],
        "oom": [{"model.hidden_size": 13}],
    }

    def sweep(arg=None):
      yield from POINTS[arg]

    REPORT = {"x": "model.hidden_size", "x_metrics": ["token_accuracy"],
              "solved": {"metric": "token_accuracy", "above": 0.99}}
""")

# The points' environment in the sweep tests: CPU, whatever the machine, so
# that both launchers' numbers can be compared digit for digit.
SWEEP_ENV = {"JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="session")
def sweep_config(tmp_path_factory):
  path = tmp_path_factory.mktemp("sweep_config") / "sweep_cfg.py"
  path.write_text(SWEEP_CONFIG)
  return str(path)


@pytest.fixture(scope="session")
def local_sweep(sweep_config, tmp_path_factory):
  """The 4-point sweep run by the local launcher, 2 points at a time:
  (config file, sweep directory, statuses, printed lines)."""
  from attention_jax import sweeps

  workdir = str(tmp_path_factory.mktemp("sweep") / "out")
  lines = []
  with pytest.MonkeyPatch.context() as mp:
    for k, v in SWEEP_ENV.items():
      mp.setenv(k, v)
    statuses = sweeps.run_sweep(sweep_config, workdir, jobs=2, print_fn=lines.append)
  return sweep_config, workdir, statuses, lines


def snapshot(workdir) -> dict[str, str]:
  """Every file under ``workdir`` -> SHA-256 of its bytes (a workdir before and after)."""
  out = {}
  for d, _, names in os.walk(workdir):
    for n in names:
      p = os.path.join(d, n)
      with open(p, "rb") as f:
        out[os.path.relpath(p, workdir)] = hashlib.sha256(f.read()).hexdigest()
  return out
