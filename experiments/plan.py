r"""Plan a full-size run before launching it: parameters, FLOPs, memory, time.

  python -m experiments.plan --config configs/papers/vaswani2017.py --device h100 \
      [--json p.json] [--mode lower|analytic|compile] [--mfu 0.4] [--devices 1]

Builds the model and the train step at the config's real shapes without
allocating them (docs/scale.md#planning-a-full-size-run).
"""

import json

from absl import app, flags
from ml_collections import config_flags

from experiments import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (configs/NAME.py[:ARG]).", lock_config=True
)
_DEVICE = flags.DEFINE_string(
  "device", "h100", "Device: h100 | h200 | a100 | tpu-v4 | tpu-v5e | cpu (this machine)."
)
_JSON = flags.DEFINE_string("json", None, "Also write the plan as JSON here.")
_MODE = flags.DEFINE_string(
  "mode",
  "lower",
  "analytic (shapes only) | lower (+ XLA's FLOP count) | compile (+ the compiled "
  "step's memory on this machine's backend: minutes on a CPU for a large model).",
)
_MFU = flags.DEFINE_float("mfu", 0.4, "Model FLOPs utilisation assumed for the time estimate.")
_DEVICES = flags.DEFINE_integer("devices", 1, "Data-parallel devices (the batch is split).")
flags.mark_flags_as_required(["config"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import plan

  config = cli.load_config(_CONFIG)
  with cli.errors_as_one_line():
    p = plan.plan(
      config, _DEVICE.value, mode=_MODE.value, mfu=_MFU.value, num_devices=_DEVICES.value
    )
  print(plan.format_plan(p))
  if _JSON.value:
    try:
      with open(_JSON.value, "w", encoding="utf-8") as f:
        json.dump(p, f, indent=2)
    except OSError as e:
      cli.fail(f"--json {_JSON.value}: {e.strerror or e}")
    print(f"wrote {_JSON.value}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
