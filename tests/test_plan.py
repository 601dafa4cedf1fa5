"""experiments.plan: every :full and paper config planned at its real shapes,
without allocating them; the base Transformer against the paper and XLA."""

import importlib
import math

import pytest

from attention_jax import config as config_lib
from attention_jax import plan
from attention_jax.benchmarks import model as bench_model
from attention_jax.errors import ConfigError

# Every config with a :full mode, and the paper configs (their default is full size).
FULL = [
  ("configs.papers.vaswani2017", None),
  ("configs.papers.bahdanau2014", None),
  ("configs.papers.cho2014", None),
  ("configs.papers.luong2015", None),
  ("configs.papers.sutskever2014", None),
  ("configs.bottleneck", "full"),
  ("configs.positions", "full"),
  ("configs.reverse_source", "full"),
  ("configs.translate", "full"),
  ("configs.vanishing", "full"),
]
KEYS = {"params", "flops_per_step", "bytes_per_device", "fits", "step_seconds", "run_hours"}


def _config(module, arg, tmp_path=None):
  c = config_lib.resolve(importlib.import_module(module).get_config(arg))
  if c.data.task == "files":  # translate.py: the user's files; any path validates
    with c.unlocked():
      c.data.train_path = c.data.eval_path = "train.tsv"
  config_lib.validate(c)
  return c


def test_full_configs_list_is_complete():
  """Every config file accepting ``:full`` is in FULL."""
  import glob
  import os

  from conftest import ROOT

  with_full = set()
  for path in glob.glob(os.path.join(ROOT, "configs", "*.py")):
    with open(path, encoding="utf-8") as f:
      if '"full"' in f.read() and not path.endswith("common.py"):
        with_full.add("configs." + os.path.basename(path)[:-3])
  assert with_full <= {m for m, a in FULL if a == "full"}


@pytest.mark.parametrize("module,arg", FULL, ids=[f"{m}:{a or ''}" for m, a in FULL])
def test_plan_every_full_config(module, arg):
  c = _config(module, arg)
  p = plan.plan(c, "h100", mode="analytic")
  assert KEYS | {"assumptions"} <= set(p)
  assert p["params"] > 0 and p["flops_per_step"] > 0
  b = p["bytes_per_device"]
  assert b["params"] == 4 * p["params"]  # float32 parameters
  assert b["total"] == pytest.approx(
    b["params"] + b["optimizer"] + b["gradients"] + b["activations"]
  )
  assert p["run_hours"] == pytest.approx(p["step_seconds"] * c.train.steps / 3600)
  assert p["fits"] == (b["total"] <= plan.USABLE_MEMORY * b["device_memory"])
  assert p["assumptions"]


@pytest.fixture(scope="module")
def vaswani():
  c = _config("configs.papers.vaswani2017", None)
  return c, plan.plan(c, "h100", mode="lower")


def test_vaswani_base_against_paper_and_xla(vaswani):
  c, p = vaswani
  # Paper (Table 3, base): 65M with one shared 37k vocabulary; here each side
  # has its own 37k sentencepiece model, so the source table is extra.
  source_table = 37_000 * 512
  assert abs(p["params"] - source_table - 65e6) / 65e6 < 0.10
  # XLA's count of the lowered step within 10% of the analytic one.
  assert p["flops_per_step_xla"] == pytest.approx(p["flops_per_step"], rel=0.10)
  # The benchmarks' count differs only by the looked-up source table.
  tokens = c.train.batch_size * (c.data.max_length + 1)
  assert p["flops_per_step_benchmarks"] - p["flops_per_step"] == pytest.approx(
    6 * source_table * tokens, rel=1e-6
  )


def test_does_not_fit_names_a_batch_that_does():
  c = _config("configs.papers.sutskever2014", None)
  p = plan.plan(c, "tpu-v5e", mode="analytic")
  assert not p["fits"] and "largest batch" in p["warning"]
  largest = p["largest_batch"]
  assert 0 < largest < c.train.batch_size
  with c.unlocked():
    c.train.batch_size = largest
  assert plan.plan(c, "tpu-v5e", mode="analytic")["fits"]
  with c.unlocked():
    c.train.batch_size = largest + 8
  assert not plan.plan(c, "tpu-v5e", mode="analytic")["fits"]


def test_devices_table_agrees_with_benchmarks():
  for key, kind in (("h100", "H100"), ("h200", "H200"), ("a100", "A100")):
    for dtype in ("bfloat16", "float32"):
      assert plan.DEVICES[key].peak[dtype] == bench_model.PEAKS[(kind, dtype)]
  for d in plan.DEVICES.values():
    assert d.source and d.memory_bytes > 0 and math.isfinite(d.peak["bfloat16"])


def test_bad_arguments_are_one_line():
  c = _config("configs.papers.cho2014", None)
  for kwargs, match in (
    ({"device": "v100"}, "--device"),
    ({"mode": "fast"}, "--mode"),
    ({"mfu": 0.0}, "--mfu"),
    ({"num_devices": 7}, "--devices"),
  ):
    with pytest.raises(ConfigError, match=match):
      plan.plan(c, **{"device": "h100", "mode": "analytic", **kwargs})
