r"""Train and evaluate one experiment.

  python -m experiments.run --config configs/quickstart.py --workdir /tmp/q \
      [--config.train.steps=500 ...]

Running again on the same workdir resumes the run.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/NAME.py[:ARG]).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of this run.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import sharding, train
  sharding.initialize_distributed()  # no-op unless launched as several processes
  config = cli.load_config(_CONFIG)
  logging.info("workdir: %s", _WORKDIR.value)
  with cli.errors_as_one_line():
    train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
