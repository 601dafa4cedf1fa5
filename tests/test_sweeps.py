"""The sweep runner: slugs, failure isolation, skipping, summary and report."""

import csv
import json
import os
import re
import textwrap

import numpy as np
import pytest
from conftest import SWEEP_CONFIG, SWEEP_ENV

from attention_jax import sweeps


@pytest.mark.parametrize(
  "value", ["../x", "/abs", "a/b", "x" * 300, "..", ".", "a\\b", "a b\n", "~/x", "\x00"]
)
def test_slug_cannot_escape(tmp_path, value):
  s = sweeps.slug({"data.train_path": value})
  assert set(s) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._=-")
  assert len(s) <= sweeps.SLUG_MAX and s not in (".", "..")
  path = sweeps.point_dir(str(tmp_path), s)
  assert os.path.dirname(path) == os.path.realpath(tmp_path)


def test_slug_distinct_and_stable():
  assert sweeps.slug({"a.b": "a/b"}) != sweeps.slug({"a.b": "a-b"})
  assert sweeps.slug({"a.b": "x" * 300}) != sweeps.slug({"a.b": "x" * 299})
  assert sweeps.slug({"model.name": "gru", "model.hidden_size": 8}) == ("hidden_size=8_name=gru")
  assert sweeps.slug({"model.hidden_size": 8, "model.name": "gru"}) == (
    "hidden_size=8_name=gru"
  )  # key order does not matter
  many = {f"k{i}": "v" * 30 for i in range(10)}
  assert len(sweeps.slug(many)) <= sweeps.SLUG_MAX
  with pytest.raises(sweeps.SweepError):
    sweeps.point_dir("/tmp/root", "../x")


@pytest.fixture(scope="module")
def failing_sweep(local_sweep):
  return local_sweep


def test_failure_recorded_others_finish(failing_sweep):
  _, workdir, statuses, lines = failing_sweep
  by_slug = {s["slug"]: s for s in statuses}
  bad = by_slug["hidden_size=8_learning_rate=1e30"]
  assert bad["status"] == "failed" and bad["returncode"] == 3
  assert any(re.search(r"became (nan|inf) at step \d+", line) for line in bad["log_tail"])
  assert by_slug["hidden_size=8"]["status"] == "done"
  assert by_slug["hidden_size=12"]["status"] == "done"
  oom = by_slug["hidden_size=13"]
  assert oom["status"] == "failed" and oom["returncode"] == -9
  assert any("experiments.run" in line for line in oom["log_tail"])
  assert sum("ETA" in line for line in lines) == 4
  with open(os.path.join(workdir, "summary.csv")) as f:
    rows = {r["point"]: r for r in csv.DictReader(f)}
  assert rows["hidden_size=8_learning_rate=1e30"]["status"] == "failed"
  assert rows["hidden_size=8_learning_rate=1e30"]["returncode"] == "3"
  assert 0.0 <= float(rows["hidden_size=12"]["token_accuracy"]) <= 1.0
  report = open(os.path.join(workdir, "report.md")).read()
  assert "## Failed points" in report and re.search(r"became (nan|inf) at step", report)
  assert "plots/token_accuracy_vs_hidden_size.png" in report
  assert os.path.getsize(os.path.join(workdir, "plots", "token_accuracy_vs_hidden_size.png")) > 1000
  assert (
    "| hidden_size=8_learning_rate=1e30 | 8 | 1e+30 | failed |"
    in open(os.path.join(workdir, "summary.md")).read()
  )


def test_rerun_skips_finished_points(failing_sweep):
  cfg, workdir, _, _ = failing_sweep
  ok = os.path.join(workdir, "hidden_size=12", sweeps.STATUS_FILE)
  before = os.stat(ok).st_mtime_ns
  lines = []
  statuses = sweeps.run_sweep(cfg, workdir, jobs=1, print_fn=lines.append)
  assert "2 already finished, 2 to run" in lines[0]
  assert [s["status"] for s in statuses] == ["skipped", "skipped", "failed", "failed"]
  assert os.stat(ok).st_mtime_ns == before
  with open(os.path.join(workdir, "summary.csv")) as f:
    assert [r["status"] for r in csv.DictReader(f)] == ["done", "done", "failed", "failed"]


def test_bad_point_rejected_before_work(tmp_path):
  cfg = tmp_path / "bad.py"
  cfg.write_text(SWEEP_CONFIG.replace('"train.learning_rate": 1e30', '"train.lerning_rate": 1'))
  with pytest.raises(sweeps.SweepError, match=r"point 2 .*train.lerning_rate"):
    sweeps.run_sweep(str(cfg), str(tmp_path / "out"), print_fn=lambda s: None)
  assert not os.path.exists(tmp_path / "out" / "hidden_size=8")


def test_point_env_threads():
  env = sweeps.point_env(jobs=2, device=0, gpus=0)
  threads = max(1, (os.cpu_count() or 1) // 2)
  assert f"intra_op_parallelism_threads={threads}" in env["XLA_FLAGS"]
  assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
  gpu = sweeps.point_env(jobs=4, device=1, gpus=2)
  assert gpu["CUDA_VISIBLE_DEVICES"] == "1"


def test_report_tables_name_the_panel_of_each_point(tmp_path):
  """A report with panels (positions: ``data.task``) names each point's panel
  in its tables: the same scheme on two tasks is two distinct rows."""
  from attention_jax.sweeps import plots

  points = [
    sweeps.Point({"model.position": "alibi", "data.task": t}, t, str(tmp_path / t))
    for t in ("reverse", "copy")
  ]
  sweep = sweeps.Sweep(
    "cfg.py",
    None,
    points,
    ("by_length",),
    {"series": ("model.position",), "panels": "data.task", "table_lengths": (2,)},
    "t",
  )

  def rows(acc):
    return [{"length": L, "examples": 4, "sequence_accuracy": acc(L)} for L in (1, 2, 3)]

  tables = {
    "by_length": {"reverse": rows(lambda L: 1.0), "copy": rows(lambda L: 1.0 if L < 3 else 0.0)}
  }
  text = "\n".join(plots.position_table_section(sweep, [], tables, str(tmp_path)))
  assert "| position=alibi task=reverse | 1 | 1.00 (n=4) | never (≤ 3) |" in text
  assert "| position=alibi task=copy | 1 | 1.00 (n=4) | 3 |" in text


# --------------------------------------------------------------------------
# Seeds: each point once per seed, pooled in the report with intervals

SEED_CONFIG = SWEEP_CONFIG + textwrap.dedent("""
    ANALYSES = ("by_length",)
    REPORT = dict(REPORT, extra=("position_table",), table_lengths=(2, 8))
""")


def test_seeds_declared_and_overridden(tmp_path):
  from attention_jax.sweeps import spec

  assert spec.sweep_seeds(None, None, 0, "c.py") == (0,)
  assert spec.sweep_seeds((0, 1, 2), None, 0, "c.py") == (0, 1, 2)
  assert spec.sweep_seeds((0, 1, 2), 2, 0, "c.py") == (0, 1)
  assert spec.sweep_seeds((3,), 3, 0, "c.py") == (3, 4, 5)
  with pytest.raises(sweeps.SweepError, match="SEEDS must be a tuple of ints"):
    spec.sweep_seeds(("a",), None, 0, "c.py")
  cfg = tmp_path / "c.py"
  cfg.write_text(SEED_CONFIG + "\nSEEDS = (0, 1, 2)\n")
  sw = sweeps.load_sweep(f"{cfg}:two", str(tmp_path / "s"))
  assert [p.slug for p in sw.points][:3] == [f"hidden_size=8_seed={s}" for s in (0, 1, 2)]
  assert sw.points[1].overrides == {"model.hidden_size": 8, "seed": 1}
  assert sw.points[1].point == "hidden_size=8"
  one = sweeps.load_sweep(f"{cfg}:two", str(tmp_path / "s"), seeds=1)  # today's layout
  assert [p.slug for p in one.points] == ["hidden_size=8", "hidden_size=12"]
  assert "seed" not in one.points[0].overrides


@pytest.fixture(scope="module")
def seed_sweep(tmp_path_factory):
  """``sweep("one")`` (1 point) with ``--seeds 2``: 2 seed-runs, 2 at a time."""
  root = tmp_path_factory.mktemp("seeds")
  cfg = root / "seed_cfg.py"
  cfg.write_text(SEED_CONFIG)
  workdir = str(root / "out")
  lines = []
  with pytest.MonkeyPatch.context() as mp:
    for k, v in SWEEP_ENV.items():
      mp.setenv(k, v)
    statuses = sweeps.run_sweep(f"{cfg}:one", workdir, jobs=2, print_fn=lines.append, seeds=2)
  return f"{cfg}:one", workdir, statuses, lines


def test_seed_runs_summary_and_report_with_intervals(seed_sweep):
  _, workdir, statuses, lines = seed_sweep
  assert "1 point × 2 seeds = 2 runs" in lines[0]
  assert [s["slug"] for s in statuses] == [f"hidden_size=8_seed={s}" for s in (0, 1)]
  assert all(s["status"] == "done" for s in statuses)
  from attention_jax import workdir as workdir_lib

  assert workdir_lib.read_config(os.path.join(workdir, "hidden_size=8_seed=1")).seed == 1
  with open(os.path.join(workdir, "summary.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [(r["point"], r["seed"]) for r in rows] == [("hidden_size=8", "0"), ("hidden_size=8", "1")]
  with open(os.path.join(workdir, "summary_by_point.csv")) as f:
    grouped = {r["point"]: r for r in csv.DictReader(f)}
  assert set(grouped) == {"hidden_size=8"}
  for g in grouped.values():
    assert g["seeds_done"] == "2" and g["seeds"] == "0 1"
    runs = [float(r["token_accuracy"]) for r in rows if r["point"] == g["point"]]
    assert float(g["token_accuracy"]) == pytest.approx(np.mean(runs))
    assert float(g["token_accuracy_low"]) <= float(g["token_accuracy"])
    assert float(g["token_accuracy"]) <= float(g["token_accuracy_high"])
  report = open(os.path.join(workdir, "report.md"), encoding="utf-8").read()
  assert "1 point × 2 seeds (0, 1) = 2 seed-runs" in report
  assert "over 2 seeds" in report or "never (all 2 seeds)" in report  # halving spread
  assert re.search(r"\| hidden_size=8 \| 2 \| \d+(-\d+)? \|", report)  # seeds, n per length
  assert re.search(r"\(n=\d+\)", report) and "## All seed-runs" in report
  for name in ("by_length_sequence_accuracy", "token_accuracy_vs_hidden_size"):
    png = os.path.join(workdir, "plots", f"{name}.png")
    assert os.path.exists(png[:-4] + ".svg")
    with open(png, "rb") as f:
      head = f.read(24)
    assert head[:4] == b"\x89PNG" and int.from_bytes(head[16:20], "big") >= 1000


def test_resume_reruns_only_the_killed_seed_run(seed_sweep):
  cfg, workdir, _, _ = seed_sweep
  killed = os.path.join(workdir, "hidden_size=8_seed=1")
  status = os.path.join(killed, sweeps.STATUS_FILE)
  st = sweeps.read_status(killed)
  st.update(status="stopped", returncode=-9)  # as a SIGKILL leaves it
  with open(status, "w") as f:
    json.dump(st, f)
  others = {
    d: os.stat(os.path.join(workdir, d, sweeps.STATUS_FILE)).st_mtime_ns
    for d in os.listdir(workdir)
    if d.startswith("hidden_size=") and os.path.join(workdir, d) != killed
  }
  lines = []
  with pytest.MonkeyPatch.context() as mp:
    for k, v in SWEEP_ENV.items():
      mp.setenv(k, v)
    statuses = sweeps.run_sweep(cfg, workdir, jobs=1, print_fn=lines.append, seeds=2)
  assert "1 already finished, 1 to run" in lines[0]
  assert [s["status"] for s in statuses] == ["skipped", "done"]
  assert all(
    os.stat(os.path.join(workdir, d, sweeps.STATUS_FILE)).st_mtime_ns == t
    for d, t in others.items()
  )
