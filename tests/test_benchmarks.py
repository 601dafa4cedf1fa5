"""The model suite's FLOP count and MFU peak (the benchmark itself is not a test)."""

import jax
import jax.numpy as jnp
import pytest

from attention_jax import objectives
from attention_jax import step as step_lib
from attention_jax.benchmarks import model as bm


@pytest.mark.parametrize("L,D,T,V,B", [(2, 64, 64, 256, 2), (3, 128, 96, 512, 2)])
def test_flops_per_token_matches_xla_cost_analysis(L, D, T, V, B):
  """6N + 12·L·d·T against XLA's own FLOP count of the compiled train step
  (an independent reference: it counts every dot, softmax and update)."""
  c = bm._config(
    "gpt",
    {
      "model.vocab_size": V,
      "data.max_length": T,
      "train.batch_size": B,
      "model.num_layers": L,
      "model.hidden_size": D,
      "model.num_heads": 4,
    },
  )
  graphdef, state, tx, schedule = step_lib.make_train_state(c, V, V)
  step = jax.jit(step_lib.make_train_step(graphdef, tx, schedule, c, objectives.get("lm")))
  tokens = jnp.zeros((B, T), jnp.int32)
  cost = step.lower(state, {"inputs": tokens, "targets": tokens}).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  ours = bm.flops_per_token("gpt", c, state.params) * B * T
  # Measured: XLA counts 1-3% more (layer norms, softmax, GELU, Adam).
  assert 0.97 < cost["flops"] / ours < 1.10, (cost["flops"], ours)


def test_cpu_mfu_peak_is_a_measured_matmul():
  if jax.default_backend() != "cpu":
    pytest.skip("CPU-only check: on accelerators the vendor peak is used")
  flops = bm.measured_matmul_flops("float32", n=256, rounds=3)
  peak, source = bm.peak_for("float32")
  assert flops > 1e8 and peak > 1e8  # any CPU here does > 0.1 GFLOP/s
  assert source == "measured 2048² float32 matmul"
  assert bm.peak_for("float32") == (peak, source)  # measured once per process
  assert bm.peak_flops("float32") is None  # no vendor figure for a CPU


def test_attention_rows_run_on_the_same_weights():
  """The layer rows' torch ``nn.MultiheadAttention`` computes our layer's
  function on the benchmark's weights (it used to keep its own random ones),
  causal and not."""
  torch = pytest.importorskip("torch", reason="torch rows exist only with torch")
  import numpy as np
  from flax import nnx

  from attention_jax.benchmarks import attention as ba

  B, T, D, N = 2, 6, 8, 2
  rng = np.random.default_rng(0)
  W = [(rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32) for _ in range(4)]
  x = rng.standard_normal((B, T, D)).astype(np.float32)
  gdef, params = ba.our_layer([jnp.asarray(w) for w in W], N, "einsum")
  mha = ba.torch_mha_layer(torch, W, N, torch.float32, "cpu")
  for causal in (False, True):
    ours = np.asarray(nnx.merge(gdef, params)(jnp.asarray(x), is_causal=causal)[0])
    mask = torch.nn.Transformer.generate_square_subsequent_mask(T) if causal else None
    with torch.no_grad():
      theirs = mha(*(torch.tensor(x),) * 3, need_weights=False, attn_mask=mask, is_causal=causal)[
        0
      ].numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    assert np.abs(ours).max() > 0.1


@pytest.mark.parametrize(
  "name", ["transformer", "gpt", "rnn_encdec", "seq2seq_lstm", "rnnsearch", "luong"]
)
def test_torch_reference_models_compute_our_loss(name):
  """The model suite's torch versions (benchmarks/torch_models.py) on our
  initial weights: the same trainable parameter count and the same initial
  loss (an independent implementation of each model's equations)."""
  pytest.importorskip("torch", reason="torch rows exist only with torch")
  import numpy as np

  V, B, T = 24, 3, 7
  overrides = {"model.vocab_size": V, "data.max_length": T, "train.batch_size": B}
  if name in ("transformer", "gpt"):
    overrides.update({"model.num_layers": 2, "model.hidden_size": 16, "model.num_heads": 2})
  else:
    overrides.update({"model.hidden_size": 12, "model.embed_dim": 8})
  c = bm._config(name, overrides)
  graphdef, state, _, _ = step_lib.make_train_state(c, V, V)
  rng = np.random.default_rng(1)
  tokens = lambda: jnp.asarray(rng.integers(4, V, size=(B, T)), jnp.int32)  # noqa: E731 - local helper
  if name == "gpt":
    batch = {"inputs": tokens(), "targets": tokens()}
  else:
    batch = {"src": tokens(), "tgt_in": tokens(), "tgt_out": tokens()}
  _, rows = bm._torch_steps(name, c, state.params, batch, quick=True)
  objective = objectives.get("lm" if name == "gpt" else "seq2seq")
  ours = objective.train_loss(step_lib.merge_for_compute(graphdef, state.params, c), batch, None, c)
  n_ours = sum(x.size for x in jax.tree.leaves(state.params))
  assert rows["torch"]["params_M"] * 1e6 == pytest.approx(n_ours)
  assert abs(rows["torch"]["init_loss"] - float(ours[0])) < 1e-5
  assert rows["torch.compile"]["note"] == "skipped: not timed with --quick"


def test_page_faults_per_call_counts_fresh_pages():
  """The model suite's ``faults_per_step``: a call that writes 8 MiB of fresh
  anonymous memory (an mmap each call) faults ~2,048 pages; reusing one
  buffer, none."""
  import mmap

  size = 8 * 2**20

  def fresh():
    m = mmap.mmap(-1, size)
    m[::4096] = b"x" * (size // 4096)
    m.close()

  kept = bytearray(size)

  def reuse():
    kept[::4096] = b"y" * (size // 4096)

  assert bm.page_faults_per_call(fresh) >= 0.9 * size / 4096
  assert bm.page_faults_per_call(reuse) < 16
