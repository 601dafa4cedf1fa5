r"""Side-by-side benchmarks against reference implementations, one process.

  python -m experiments.benchmark --suite rnn [--quick] [--json out.json]

Prints a table per suite (median ms and the median paired ratio to the
reference) and the machine it ran on. Numbers hold for this machine and run.
"""

import importlib
import json

from absl import app, flags

from experiments import cli

_SUITE = flags.DEFINE_string("suite", "all", "Suite name, or 'all'.")
_QUICK = flags.DEFINE_bool("quick", False, "Small shapes and few rounds.")
_JSON = flags.DEFINE_string("json", None, "Also write the rows to this JSON file.")
_CLOCK = flags.DEFINE_enum(
    "clock", "wall", ["wall", "process"],
    "wall: elapsed time. process: this process's CPU time, steadier on a shared, "
    "oversubscribed machine; run single-threaded (OMP_NUM_THREADS=1, XLA_FLAGS="
    "'--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1').")


def main(argv):
  del argv
  from attention_jax.benchmarks import SUITES, timing
  names = sorted(SUITES) if _SUITE.value == "all" else [_SUITE.value]
  for n in names:
    if n not in SUITES:
      cli.fail(f"unknown --suite {n!r}; allowed: {', '.join(sorted(SUITES))}, all")
  if _CLOCK.value == "process":
    import time
    timing.default_clock = time.process_time
  print(f"machine: {timing.machine()}; clock: {_CLOCK.value}")
  results = {}
  for n in names:
    module = importlib.import_module(f"attention_jax.benchmarks.{SUITES[n]}")
    rows = module.run(quick=_QUICK.value)
    results[n] = rows
    print(f"\n## suite {n}\n")
    print(timing.format_table(rows, module.COLUMNS))
  if _JSON.value:
    with open(_JSON.value, "w", encoding="utf-8") as f:
      json.dump({"machine": timing.machine(), "suites": results}, f, indent=2)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
