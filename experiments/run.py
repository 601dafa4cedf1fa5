r"""Train and evaluate one experiment.

  python -m experiments.run --config configs/quickstart.py --workdir /tmp/q \
      [--config.train.steps=500 ...]

Running again on the same workdir resumes the run. A resumed run refuses a
config whose hyperparameters differ from the run's ``config.json`` unless
``--allow_config_change``, and data files whose bytes changed unless
``--allow_data_change``. Ctrl-C saves the step in progress (exit 130); exit
codes: docs/reliability.md.
"""

from absl import flags, logging
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (configs/NAME.py[:ARG]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of this run.")
_ALLOW_CHANGE = flags.DEFINE_bool(
  "allow_config_change",
  False,
  "Resume even though hyperparameters differ from the workdir's config.json "
  "(shapes must still match); the changes go to config_changes.jsonl.",
)
_ALLOW_DATA_CHANGE = flags.DEFINE_bool(
  "allow_data_change",
  False,
  "Resume even though data files differ from those the run read (their SHA-256 in "
  "data_fingerprint.json); the change goes to config_changes.jsonl.",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import workdir_lock  # no JAX: refuses "", " " and "/" at once

  with cli.errors_as_one_line():
    workdir_lock.checked_workdir(_WORKDIR.value)
  from attention_jax import sharding, train

  sharding.initialize_distributed()  # no-op unless launched as several processes
  config = cli.load_config(_CONFIG)
  logging.info("workdir: %s", _WORKDIR.value)
  with cli.errors_as_one_line():
    train.train_and_evaluate(
      config,
      _WORKDIR.value,
      allow_config_change=_ALLOW_CHANGE.value,
      allow_data_change=_ALLOW_DATA_CHANGE.value,
    )


if __name__ == "__main__":
  cli.run(main)
