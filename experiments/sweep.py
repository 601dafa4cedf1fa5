r"""Run a sweep: every point of a config's ``sweep(arg)`` in its own workdir.

  python -m experiments.sweep --config configs/bottleneck.py[:ARG] \
      --workdir DIR [--jobs N] [--reanalyze] [--report_only]

Each point trains in ``DIR/<point>/`` (a subprocess running
``experiments.run``); finished points are skipped on re-run; a failed point is
recorded and the others go on. Writes ``DIR/summary.csv``, ``DIR/summary.md``,
``DIR/plots/*.png`` and ``DIR/report.md``. Exits 1 if any point failed.
"""

import sys

from absl import app, flags

from experiments import cli

_CONFIG = flags.DEFINE_string("config", None, "Config file with sweep(): configs/NAME.py[:ARG].")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of the sweep.")
_JOBS = flags.DEFINE_integer("jobs", 1, "Points run at once (CPU); at most one per GPU.")
_REANALYZE = flags.DEFINE_bool(
    "reanalyze", False, "Also re-run finished points: training is skipped (it "
    "finished), the per-point analyses run again.")
_REPORT_ONLY = flags.DEFINE_bool(
    "report_only", False, "Run nothing: write summary.csv, report.md and plots "
    "of the points finished so far.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  if _JOBS.value < 1:
    cli.fail(f"--jobs must be >= 1, got {_JOBS.value}")
  from attention_jax.sweeps import runner
  try:
    with cli.errors_as_one_line():
      statuses = runner.run_sweep(_CONFIG.value, _WORKDIR.value, jobs=_JOBS.value,
                                  print_fn=lambda s: print(s, flush=True),
                                  reanalyze=_REANALYZE.value,
                                  report_only=_REPORT_ONLY.value)
  except KeyboardInterrupt:
    cli.fail("interrupted; run the same command again to resume", code=130)
  if any(s["status"] == "failed" for s in statuses) and not _REPORT_ONLY.value:
    sys.exit(1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
