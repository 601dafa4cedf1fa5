"""Data parallelism, multi-process runs and mixed precision, on CPU devices."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from attention_jax import train
from conftest import ROOT, tiny_config

WORKER = os.path.join(ROOT, "tests", "dp_worker.py")


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  return env


def test_data_parallel_8_devices_matches_1_and_restores_anywhere(tmp_path):
  env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
  r = subprocess.run([sys.executable, WORKER, "dp", str(tmp_path)], env=env,
                     capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.load(open(tmp_path / "dp.json"))
  np.testing.assert_allclose(out["8"]["losses"], out["1"]["losses"], rtol=1e-5)
  assert len(out["1"]["losses"]) == 6
  assert out["restored_on_1"] and out["restored_on_2"]
  import jax
  from attention_jax.checkpoint import Checkpointer
  run = train.build_run(tiny_config(**{"train.steps": 6}))
  states = []
  for n in (1, 8):
    ckpt = Checkpointer(str(tmp_path / f"dev{n}" / "checkpoints"))
    states.append(ckpt.restore(run.state)[0])
    ckpt.close()
  for a, b in zip(jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_on_loopback_agree(tmp_path):
  port = _free_port()
  procs = []
  for i in range(2):
    env = _env(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i))
    procs.append(subprocess.Popen([sys.executable, WORKER, "multiprocess", str(tmp_path)],
                                  env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True))
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  a, b = (json.load(open(tmp_path / f"proc{i}.json")) for i in range(2))
  assert a["devices"] == 2
  assert a["losses"] == b["losses"] and a["params"] == b["params"]
  sys.path.insert(0, os.path.dirname(WORKER))
  import dp_worker
  single = dp_worker.run_steps()   # one process, one device
  np.testing.assert_allclose(a["losses"], single["losses"], rtol=1e-5)
  np.testing.assert_allclose(a["params"], single["params"], rtol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_bf16_trains_like_f32(tmp_path, dtype):
  accs = {}
  for d in ("float32", dtype):
    config = tiny_config(**{"train.compute_dtype": d, "train.steps": 150,
                            "train.learning_rate": 1e-2, "eval.every_steps": 150,
                            "checkpoint.every_steps": 150, "train.log_every_steps": 50})
    accs[d] = train.train_and_evaluate(config, str(tmp_path / d))["token_accuracy"]
  assert accs["float32"] > 0.8, accs
  assert abs(accs[dtype] - accs["float32"]) < 0.1, accs
