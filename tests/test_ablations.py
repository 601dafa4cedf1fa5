"""Each ablation config builds its sweep and runs one tiny point end to end."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, tiny_config

from attention_jax import evaluation, models, sweeps, train
from attention_jax.sweeps import analyses, spec

CONFIGS = ("bottleneck", "vanishing", "reverse_source", "positions")


@pytest.mark.parametrize("name", CONFIGS)
def test_default_and_full_sweeps_validate(tmp_path, name):
  path = os.path.join(ROOT, "configs", f"{name}.py")
  for arg, least in ((None, 4), ("full", 8)):
    spec = path + (f":{arg}" if arg else "")
    sweep = sweeps.load_sweep(spec, str(tmp_path))  # validates every point
    assert len(sweep.points) >= least
    assert len({p.slug for p in sweep.points}) == len(sweep.points)
    assert len(sweep.seeds) >= 3  # every claim with its spread over seeds


@pytest.fixture(scope="module", params=CONFIGS)
def tiny_point(request, tmp_path_factory):
  """Trains the config's tiny point in-process and writes its report."""
  name = request.param
  root = str(tmp_path_factory.mktemp(name))
  sweep = sweeps.load_sweep(os.path.join(ROOT, "configs", f"{name}.py:tiny"), root)
  assert len(sweep.points) == 1
  point = sweep.points[0]
  config = sweeps.apply_overrides(
    spec._call_with_arg(spec._load_module(sweep.config_path).get_config, "tiny"), point.overrides
  )
  train.train_and_evaluate(config, point.workdir)
  analyses.analyze_point(point.workdir, sweep.analyses)
  status = {"status": "done", "returncode": 0, "seconds": 1.0, "slug": point.slug}
  sweeps.write_outputs(sweep, root, [status])
  return name, sweep, root


def test_tiny_point_report(tiny_point):
  name, sweep, root = tiny_point
  report = open(os.path.join(root, "report.md")).read()
  rows = sweeps.read_csv(os.path.join(root, "summary.csv"))
  assert len(rows) == 1 and rows[0]["status"] == "done"
  assert "### What the numbers show" in report
  pngs = [f for f in os.listdir(os.path.join(root, "plots")) if f.endswith(".png")]
  for png in pngs:
    assert f"plots/{png}" in report
  workdir = sweep.points[0].workdir
  if name in ("bottleneck", "reverse_source", "positions"):
    assert "by_length_sequence_accuracy.png" in pngs
    by_len = sweeps.read_csv(os.path.join(workdir, sweeps.BY_LENGTH_CSV))
    # Lengths 1..8 (2 × limit 4) of the held-out test split, which has no
    # source of length 1 with 10 symbols (train/eval/test: 6/4/0 of 10).
    assert [r["length"] for r in by_len] == list(range(2, 9))
    assert [r["in_training_range"] for r in by_len] == [1] * 3 + [0] * 4
    assert {r["length_unit"] for r in by_len} == {"symbols"}
    assert sum(r["examples"] for r in by_len) == analyses.EXAMPLES_PER_LENGTH * 8
    assert {"bleu", "chrf"} <= set(by_len[0])
    assert all(
      0 <= r["sequence_accuracy"] <= r["token_accuracy"] + 1e-9 or r["sequence_accuracy"] == 0
      for r in by_len
    )
    if name == "bottleneck":
      _check_probe_and_alignment(workdir, report, pngs, by_len)
    if name == "positions":  # gpt, decoder-only, on reverse: where it falls
      assert "## sequence accuracy by length: where each falls below half" in report
      table = report.split("where each falls below half")[1]
      row = next(
        line for line in table.splitlines() if line.startswith("| name=gpt position=alibi |")
      )
      cells = [c.strip() for c in row.strip("|").split("|")]
      assert len(cells) == 1 + 1 + 8 + 1  # point, seeds, 8 lengths, where
      assert cells[-1] == "never (≤ 8)" or 2 <= int(cells[-1]) <= 8
  else:
    assert {"loss_ratio_vs_length.png", "gradient_norms.png"} <= set(pngs)
    grads = sweeps.read_csv(os.path.join(workdir, sweeps.GRADIENTS_CSV))
    for phase in ("init", "trained"):
      rs = [r for r in grads if r["phase"] == phase]
      assert [r["t"] for r in rs] == list(range(1, 13))
      g = np.array([r["grad_h_norm"] for r in rs])
      assert np.all(np.isfinite(g)) and np.all(g > 0)
      assert g[0] < g[-1]  # a tanh recurrence: the signal decays back in time
    assert "‖g_1‖/‖g_T‖ init" in report
    assert rows[0]["loss_ratio"] == pytest.approx(rows[0]["loss"] / rows[0]["baseline_loss"])


def _check_probe_and_alignment(workdir, report, pngs, by_len):
  """The bottleneck's tiny point (rnnsearch) is probed, its attention scored
  against the gold anti-diagonal, and the report has both sections."""
  probe_dir = os.path.join(workdir, "probe")
  assert {
    "initial_state.csv",
    "decoder_states.csv",
    "probe.json",
    "initial_state.png",
    "decoder_states.png",
  } <= set(os.listdir(probe_dir))
  rows = sweeps.read_csv(os.path.join(probe_dir, "initial_state.csv"))
  assert {r["length"] for r in rows} == {3, 4}  # 2: under 20 test sources
  assert len(rows) == 3 + 4 and {r["state"] for r in rows} == {"s"}
  for r in rows:
    assert r["selectivity"] == pytest.approx(r["accuracy"] - r["control_accuracy"], abs=1e-5)
    n = r["train_examples"] + r["test_examples"]  # distinct sources, <= 200
    assert 20 <= n <= 200 and r["train_examples"] == round(0.8 * n)
  assert "## What the decoder's initial state holds" in report
  assert "probe_initial_state.png" in pngs
  assert all(
    0 <= r["alignment_accuracy"] <= 1 and 0 < r["gold_attention_mass"] <= 1 for r in by_len
  )
  assert "## Attention against the gold alignment" in report
  rep, paths = evaluation.evaluate_workdir(workdir, "test")
  o = rep["overall"]
  assert 0 <= o["alignment_accuracy"] <= 1 and o["unaligned_tokens"] == 0
  assert o["aligned_tokens"] == sum(r["aligned_tokens"] for r in rep["by_length"])
  assert "alignment_accuracy" in open(paths["csv"]).readline()


def test_length_stats_statement():
  from attention_jax.sweeps import plots as sweep_plots

  rows = [
    {"length": L, "acc": a}
    for L, a in zip(range(1, 11), [1, 1, 0.9, 0.8, 0.6, 0.45, 0.3, 0.2, 0, 0], strict=True)
  ]
  st = sweep_plots.length_stats(rows, "acc", 1, 8)
  assert st["short"] == pytest.approx(1.0)  # lengths 1-2 (20% of 8, rounded)
  assert st["half_at"] == 6
  assert st["tail"] == pytest.approx(np.mean([0.8, 0.6, 0.45, 0.3, 0.2]))
  assert st["beyond"] == 0.0


def test_rnn_encdec_reverse_source_reads_backwards():
  """reverse_source=True on src equals reverse_source=False on the reversed src."""
  fwd = models.build_model(tiny_config(), 10, 10)
  rev = models.build_model(tiny_config(**{"model.reverse_source": True}), 10, 10)
  src = np.array([[4, 5, 6, 7, 0, 0], [8, 9, 4, 0, 0, 0]], np.int32)
  flipped = np.array([[7, 6, 5, 4, 0, 0], [4, 9, 8, 0, 0, 0]], np.int32)
  a = rev.encode(jnp.asarray(src))["context"]
  b = fwd.encode(jnp.asarray(flipped))["context"]
  c = fwd.encode(jnp.asarray(src))["context"]
  np.testing.assert_allclose(a, b, atol=1e-6)
  assert not np.allclose(a, c, atol=1e-3)
