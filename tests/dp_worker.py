"""Run in a subprocess by test_scale.py (device counts are fixed at jax import).

python tests/dp_worker.py dp OUT_DIR           # 8 forced CPU devices
"""

import json
import os
import sys

import jax
import numpy as np

from attention_jax import sharding, train
from attention_jax import workdir as workdir_lib
from attention_jax.checkpoint import Checkpointer
from attention_jax.testing import tiny_config


def checksum(tree) -> list[float]:
  return [float(np.asarray(jax.device_get(x), np.float64).sum()) for x in jax.tree.leaves(tree)]


def data_parallel(out_dir: str) -> None:
  assert jax.device_count() == 8, jax.devices()
  result = {}
  for n in (1, 8):
    config = tiny_config(
      **{
        "train.num_devices": n,
        "train.steps": 6,
        "train.log_every_steps": 1,
        "eval.every_steps": 6,
        "checkpoint.every_steps": 6,
      }
    )
    workdir = os.path.join(out_dir, f"dev{n}")
    train.train_and_evaluate(config, workdir)
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    result[n] = {"losses": [r["loss"] for r in rows if r["split"] == "train"]}
  # Restore the 8-device checkpoint onto meshes of 1 and 2 devices.
  config = tiny_config(**{"train.steps": 6})
  run = workdir_lib.build_run(config)
  saved = None
  for n in (8, 1, 2):
    mesh = sharding.make_mesh(n)
    target = sharding.put_replicated(run.state, mesh)
    ckpt = Checkpointer(os.path.join(out_dir, "dev8", "checkpoints"))
    state, _ = ckpt.restore(target)
    ckpt.close()
    leaves = [np.asarray(jax.device_get(x)) for x in jax.tree.leaves(state)]
    devs = {len(x.sharding.device_set) for x in jax.tree.leaves(state)}
    assert devs == {n}, (n, devs)
    if saved is None:
      saved = leaves
    for a, b in zip(saved, leaves, strict=True):
      np.testing.assert_array_equal(a, b)
    result[f"restored_on_{n}"] = True
  json.dump(result, open(os.path.join(out_dir, "dp.json"), "w"))


if __name__ == "__main__":
  {"dp": data_parallel}[sys.argv[1]](sys.argv[2])
