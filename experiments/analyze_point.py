r"""Per-point analyses of a trained workdir, run by the sweep after training.

  python -m experiments.analyze_point --workdir DIR --analyses by_length

``by_length``: accuracy per source length up to 2× the training limit →
``DIR/eval/by_length.csv``.
"""

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run's workdir.")
_ANALYSES = flags.DEFINE_list("analyses", ["by_length"], "Analyses to run.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax.sweeps import analyses

  with cli.errors_as_one_line():
    analyses.analyze_point(_WORKDIR.value, _ANALYSES.value)


if __name__ == "__main__":
  cli.run(main)
