r"""Side-by-side benchmarks against reference implementations, one process.

  python -m experiments.benchmark --suite rnn [--quick] [--json out.json]

Prints a table per suite (median ms and the median paired ratio to the
reference) and the machine it ran on. Numbers hold for this machine and run.
With --json, the file is rewritten after each suite (the machine, each suite's
rows and its wall-clock seconds), so a run stopped by a time limit keeps the
suites it finished.

Every timing waits for the call it times, so asynchronous dispatch buys
nothing here: by default XLA computes on the calling thread, as torch does
(``ATTENTION_JAX_MALLOC=inline``, docs/performance.md#host-memory; the
``machine:`` line says what ran).
"""

import importlib
import time

from absl import flags

from attention_jax import fileio
from experiments import cli

_SUITE = flags.DEFINE_string("suite", "all", "Suite name, or 'all'.")
_QUICK = flags.DEFINE_bool("quick", False, "Small shapes and few rounds.")
_JSON = flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")
_COMPILE_LIMIT = flags.DEFINE_float(
  "torch_compile_limit",
  180.0,
  "Model suite: seconds torch.compile may take to compile a model's train step; "
  "past it the compile is stopped and the torch.compile row skipped (with the reason).",
  lower_bound=1.0,
)
_CLOCK = flags.DEFINE_enum(
  "clock",
  "wall",
  ["wall", "process"],
  "wall: elapsed time. process: this process's CPU time, steadier on a shared, "
  "oversubscribed machine; run single-threaded (OMP_NUM_THREADS=1, XLA_FLAGS="
  "'--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1').",
)


def main(argv):
  del argv
  from attention_jax.benchmarks import SUITES, timing

  names = list(SUITES) if _SUITE.value == "all" else [_SUITE.value]
  for n in names:
    if n not in SUITES:
      cli.fail(f"unknown --suite {n!r}; allowed: {', '.join(sorted(SUITES))}, all")
  if "model" in names:
    from attention_jax.benchmarks import model as model_suite

    model_suite.COMPILE_LIMIT_S = _COMPILE_LIMIT.value
  if _CLOCK.value == "process":
    timing.default_clock = time.process_time
  machine = timing.machine()
  print(f"machine: {machine}; clock: {_CLOCK.value}", flush=True)
  results, seconds = {}, {}
  for n in names:
    t0 = time.perf_counter()
    module = importlib.import_module(f"attention_jax.benchmarks.{SUITES[n]}")
    rows = module.run(quick=_QUICK.value)
    results[n], seconds[n] = rows, round(time.perf_counter() - t0, 1)
    print(f"\n## suite {n} ({seconds[n]:.0f} s)\n")
    print(timing.format_table(rows, module.COLUMNS), flush=True)
    if _JSON.value:
      fileio.atomic_write_json(
        _JSON.value, {"machine": machine, "suites": results, "seconds": seconds}, indent=2
      )


if __name__ == "__main__":
  cli.run(main, malloc="inline")
