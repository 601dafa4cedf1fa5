r"""Per-timestep gradient norms through the recurrence, at init and trained.

  python -m experiments.gradients --workdir DIR \
      [--config configs/long_range.py:cell=elman,task=adding,length=100] \
      [--cells elman,gru,lstm,attention] [--examples 32]

Measures ‖∂L/∂h_t‖, ‖∂L/∂x_t‖ and σ_max(∂h_T/∂h_t) (float64, batch-averaged)
of the trained run in DIR (or of each trained run in DIR's sub-directories)
and of the models at initialization (one per cell in --cells, with the task
and sizes of --config, or of the trained run's config). Writes
DIR/gradients/gradients.csv, DIR/gradients/decay.csv and
DIR/gradients/gradients.png. See attention_jax/gradients.py.
"""

from absl import flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "Config file (configs/NAME.py[:ARG]) for the models at "
  "initialization; optional when DIR holds a trained run.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (may be empty).")
_CELLS = flags.DEFINE_list(
  "cells", "elman,gru,lstm,attention", "Variants measured at initialization."
)
_EXAMPLES = flags.DEFINE_integer(
  "examples", 0, "Evaluation examples averaged (0: train.batch_size)."
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import gradients

  known = {label: v for v in gradients.VARIANTS for label in [v[0]]}
  for c in _CELLS.value:
    if c not in known:
      cli.fail(f"--cells: unknown cell {c!r}; allowed: {', '.join(known)}")
  if _EXAMPLES.value < 0:
    cli.fail(f"--examples must be >= 0, got {_EXAMPLES.value}")
  config = cli.load_config(_CONFIG) if _CONFIG.value is not None else None
  with cli.errors_as_one_line():
    result = gradients.analyze_workdir(
      _WORKDIR.value,
      config,
      variants=[known[c] for c in _CELLS.value],
      examples=_EXAMPLES.value or None,
    )
  print(
    f"{'phase':8} {'cell':10} {'step':>6} {'loss':>9} "
    f"{'|dL/dh_1|/|dL/dh_T|':>20} {'decay/step':>10} {'sigma(dh_T/dh_1)':>17}"
  )
  for r in result["decay"]:
    sig = r["jacobian_sigma_first"]
    print(
      f"{r['phase']:8} {r['cell']:10} {r['step']:>6} {r['loss']:>9.4f} "
      f"{r['grad_h_ratio_first_last']:>20.3e} {r['decay_per_step_grad_h']:>10.4f} "
      f"{sig if sig == '' else format(sig, '.3e'):>17}"
    )
  for path in result["files"]:
    print(f"wrote {path}")


if __name__ == "__main__":
  cli.run(main)
