"""Data parallelism, multi-process runs and mixed precision, on CPU devices."""

import json
import os
import re
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import ROOT, tiny_config

from attention_jax import config as config_lib
from attention_jax import faults, sharding, train, writers
from attention_jax import workdir as workdir_lib

WORKER = os.path.join(ROOT, "tests", "dp_worker.py")


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
  return env


def test_data_parallel_8_devices_matches_1_and_restores_anywhere(tmp_path):
  env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
  r = subprocess.run(
    [sys.executable, WORKER, "dp", str(tmp_path)],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  out = json.load(open(tmp_path / "dp.json"))
  np.testing.assert_allclose(out["8"]["losses"], out["1"]["losses"], rtol=1e-5)
  assert len(out["1"]["losses"]) == 6
  assert out["restored_on_1"] and out["restored_on_2"]
  import jax

  from attention_jax.checkpoint import Checkpointer

  run = workdir_lib.build_run(tiny_config(**{"train.steps": 6}))
  states = []
  for n in (1, 8):
    ckpt = Checkpointer(str(tmp_path / f"dev{n}" / "checkpoints"))
    states.append(ckpt.restore(run.state)[0])
    ckpt.close()
  for a, b in zip(
    jax.tree.leaves(states[0].params), jax.tree.leaves(states[1].params), strict=True
  ):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# --------------------------------------------------------------------------
# Several processes: whole runs of experiments.run (gloo, loopback)

# 16 steps; eval and checkpoints at 8 and 16; train rows every 4 steps.
MULTI = {
  "train.steps": 16,
  "checkpoint.every_steps": 8,
  "eval.every_steps": 8,
  "train.log_every_steps": 4,
  "model.hidden_size": 16,
  "model.embed_dim": 8,
  "data.eval_examples": 40,
  "eval.batch_size": 16,
  "train.batch_size": 8,
  "train.warmup_steps": 2,
}


@pytest.fixture(scope="module")
def launch(tmp_path_factory):
  """``launch(workdir, processes, faults_of_process_1=None)`` runs
  ``experiments.run`` on a tiny seq2seq config: one process with 2 forced CPU
  devices, or ``processes`` processes of one device each (gloo collectives on
  loopback). Returns their CompletedProcess-like results, process 0 first."""
  base = tmp_path_factory.mktemp("multi")
  config_file = base / "tiny_config.py"
  config_file.write_text(
    "import json\nimport ml_collections\n\n\ndef get_config(arg=None):\n"
    "  return ml_collections.ConfigDict(json.loads("
    f"{config_lib.to_json(tiny_config(**MULTI))!r}))\n"
  )
  env = {k: v for k, v in _env().items() if k != faults.ENV}
  env.update(
    JAX_COMPILATION_CACHE_DIR=str(base / "jax_cache"),
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
  )
  command = [sys.executable, "-m", "experiments.run", f"--config={config_file}"]

  def run(workdir, processes, fault=None):
    if processes == 1:
      e = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
      return [
        subprocess.run(
          command + [f"--workdir={workdir}"],
          cwd=ROOT,
          env=e,
          capture_output=True,
          text=True,
          timeout=600,
        )
      ]
    port = _free_port()
    procs = []
    for i in range(processes):
      e = dict(
        env,
        JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
        JAX_NUM_PROCESSES=str(processes),
        JAX_PROCESS_ID=str(i),
      )
      if fault and i == 1:
        e[faults.ENV] = fault
      procs.append(
        subprocess.Popen(
          command + [f"--workdir={workdir}"],
          cwd=ROOT,
          env=e,
          stdout=subprocess.PIPE,
          stderr=subprocess.PIPE,
          text=True,
        )
      )
    out = []
    for p in procs:
      stdout, stderr = p.communicate(timeout=600)
      out.append(SimpleNamespace(returncode=p.returncode, stdout=stdout, stderr=stderr))
    return out

  return run


def _rows(workdir):
  return [
    {k: v for k, v in r.items() if not k.endswith("per_sec")} for r in writers.read_metrics(workdir)
  ]


def _params(workdir):
  import jax

  run = workdir_lib.load(str(workdir))
  return [np.asarray(x) for x in jax.tree.leaves(run.state)]


def test_two_processes_run_evaluate_checkpoint_and_resume_like_one(launch, tmp_path):
  """Two processes (one workdir): SIGTERM to process 1 alone makes both save
  the same step and exit 75; the rerun resumes and its whole metrics.jsonl
  (train and eval rows) and final state equal one process's on 2 devices."""
  ref = tmp_path / "one"
  (r,) = launch(ref, 1)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "data-parallel over 2 device(s), 1 process(es)" in r.stderr
  two = tmp_path / "two"
  stopped = launch(two, 2, fault="sigterm_at_step:5")
  lines = []
  for p in stopped:
    assert p.returncode == 75, p.stderr[-3000:]
    lines.append(re.findall(r"error: stopped by SIGTERM after step (\d+)", p.stderr))
  assert lines[0] == lines[1] and len(lines[0]) == 1, lines
  step = int(lines[0][0])
  print(f"both processes stopped after step {step}")
  assert 5 <= step < 16
  assert "data-parallel over 2 device(s), 2 process(es)" in stopped[0].stderr
  saved = train.checkpoint_lib.Checkpointer(str(two / "checkpoints")).committed_steps()
  assert saved[-1] == step, saved
  resumed = launch(two, 2)
  for p in resumed:
    assert p.returncode == 0, p.stderr[-3000:]
  assert f"resumed from checkpoint at step {step}" in resumed[1].stderr
  rows_one, rows_two = _rows(ref), _rows(two)
  assert [(r["step"], r["split"]) for r in rows_two] == [(r["step"], r["split"]) for r in rows_one]
  assert {r["split"] for r in rows_one} == {"train", "eval"}
  for a, b in zip(rows_one, rows_two, strict=True):
    assert a.keys() == b.keys()
    for k in a:
      want = a[k] if isinstance(a[k], str) else pytest.approx(a[k], rel=1e-5, abs=1e-6)
      assert b[k] == want, (a["step"], k)
  for a, b in zip(_params(ref), _params(two), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_num_devices_takes_the_same_number_from_every_process():
  def dev(p, i):
    return SimpleNamespace(process_index=p, id=10 * p + i)

  devices = [dev(p, i) for p in range(2) for i in range(4)]

  def ids(ds):
    return [d.id for d in ds]

  assert ids(sharding.pick_devices(devices)) == [0, 1, 2, 3, 10, 11, 12, 13]
  assert ids(sharding.pick_devices(devices, 4)) == [0, 1, 10, 11]
  assert ids(sharding.pick_devices(devices, 2)) == [0, 10]
  for bad in (3, 1, 10):
    with pytest.raises(config_lib.ConfigError, match="'train.num_devices'"):
      sharding.pick_devices(devices, bad)
  single = [dev(0, i) for i in range(8)]
  assert ids(sharding.pick_devices(single, 3)) == [0, 1, 2]


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_bf16_trains_like_f32(tmp_path, dtype):
  accs = {}
  for d in ("float32", dtype):
    config = tiny_config(
      **{
        "train.compute_dtype": d,
        "train.steps": 150,
        "train.learning_rate": 1e-2,
        "eval.every_steps": 150,
        "checkpoint.every_steps": 150,
        "train.log_every_steps": 50,
      }
    )
    accs[d] = train.train_and_evaluate(config, str(tmp_path / d))["token_accuracy"]
  assert accs["float32"] > 0.8, accs
  assert abs(accs[dtype] - accs["float32"]) < 0.1, accs
