"""Checks that need a GPU: cuDNN attention in bf16, the bf16 GPT step (also
with RoPE and ALiBi, and their KV cache), the fused RNN backward and one bf16
run of experiments.run there.

On a machine without one every test here is skipped, with the reason shown in
pytest's summary (``-ra``). ``tools/gpu_check.sh`` runs them on a GPU.
"""

import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT, tiny_config
from flax import nnx

from attention_jax import attention, objectives, precision, rnn
from attention_jax import step as step_lib
from attention_jax.testing import decode_in_steps

pytestmark = pytest.mark.skipif(
  jax.default_backend() != "gpu",
  reason=f"needs a GPU (jax.default_backend() is {jax.default_backend()!r}); "
  "run tools/gpu_check.sh on one",
)


def _qkv(B=2, T=128, N=4, h=64, dtype=jnp.bfloat16, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  return [jax.random.normal(k, (B, T, N, h), jnp.float32).astype(dtype) for k in keys]


def test_auto_attention_is_cudnn_in_bf16_and_matches_xla():
  q, k, v = _qkv()
  attention.last_path.clear()

  def f(impl):
    return jax.jit(
      lambda q, k, v: attention.scaled_dot_product_attention(
        q, k, v, is_causal=True, implementation=impl
      )
    )

  out = f("auto")(q, k, v)
  assert attention.last_path["used"] == "cudnn", attention.last_path
  ref = f("xla")(q, k, v)
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref, np.float32), atol=2e-2)

  def loss(impl):
    return jax.jit(
      jax.grad(
        lambda q, k, v: (
          attention.scaled_dot_product_attention(
            q, k, v, is_causal=True, implementation=impl
          ).astype(jnp.float32)
          ** 2
        ).sum(),
        argnums=(0, 1, 2),
      )
    )

  for a, b in zip(loss("auto")(q, k, v), loss("xla")(q, k, v), strict=True):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    assert np.abs(a - b).max() <= 3e-2 * np.abs(b).max()


def test_bf16_gpt_step_takes_bf16_products_cudnn_attention_and_learns():
  config = tiny_config(
    **{
      "model.name": "gpt",
      "data.task": "text",
      "model.hidden_size": 128,
      "model.num_heads": 2,
      "model.num_layers": 2,
      "model.max_positions": 128,
      "data.max_length": 128,
      "train.compute_dtype": "bfloat16",
      "train.learning_rate": 3e-3,
      "train.warmup_steps": 0,
      "model.scan_layers": True,
    }
  )
  graphdef, state, tx, schedule = step_lib.create_state(config, 64, 64)
  tokens = jax.random.randint(jax.random.PRNGKey(1), (8, 129), 4, 64)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  lowered = jax.jit(
    step_lib.make_train_step(graphdef, tx, schedule, config, objectives.get("lm"))
  ).lower(state, batch)
  assert precision.step_dtype(lowered.as_text()) == "bfloat16"
  step = lowered.compile()
  assert re.search(r"cudnn\$fmha|__cudnn\$fmha", step.as_text()), "no cuDNN attention"
  losses = []
  for _ in range(30):  # memorise one batch
    state, m = step(state, batch)
    losses.append(float(m["loss"]))
  assert np.isfinite(losses).all() and losses[-1] < 0.7 * losses[0], losses
  assert {x.dtype for x in jax.tree.leaves(state.params)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_rnn_fused_backward_equals_autodiff_on_gpu(kind):
  cell = rnn.make_cell(kind, 64, 128, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(cell)
  x = jax.random.normal(jax.random.PRNGKey(2), (16, 40, 64))
  mask = jnp.arange(40)[None, :] < jnp.array([40, 31, 12, 1] * 4)[:, None]

  def grads(backward, hoist, unroll):
    def loss(p, x):
      _, ys = rnn.scan(
        nnx.merge(graphdef, p),
        x,
        mask=mask,
        backward=backward,
        hoist_input_projection=hoist,
        unroll=unroll,
      )
      return (ys**2).mean()

    return jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  ref = grads("autodiff", False, 1)
  for options in (("fused", True, 8), ("fused", False, 1), ("autodiff", True, 8)):
    for a, b in zip(jax.tree.leaves(grads(*options)), jax.tree.leaves(ref), strict=True):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-3, atol=2e-5)


def test_bf16_transformer_run_on_gpu(tmp_path):
  """One short experiments.run of the tiny Transformer in bf16: it trains,
  evaluates and checkpoints on the GPU, and says so in its start-up line."""
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.run",
      "--config=configs/transformer.py:tiny",
      f"--workdir={tmp_path}",
      "--config.train.compute_dtype=bfloat16",
      "--config.train.steps=150",
      "--config.eval.every_steps=150",
      "--config.checkpoint.every_steps=150",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
    env=dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false"),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert "on gpu" in r.stderr and "compute dtype bfloat16" in r.stderr
  acc = float(re.findall(r"token_accuracy (\d\.\d+)", r.stderr)[-1])
  assert acc > 0.5, r.stderr[-2000:]


@pytest.mark.parametrize("scheme", ["rope", "alibi"])
def test_bf16_gpt_positions_on_cudnn_match_xla_and_the_cache(scheme):
  """RoPE (queries and keys rotated before the kernel) and ALiBi (a bias into
  it) in bf16 on the GPU: ``auto`` takes cuDNN or says why not; the losses of
  the ``auto`` and ``xla`` train steps agree, and incremental decoding with
  the KV cache equals the full forward pass in bf16."""
  base = {
    "model.name": "gpt",
    "data.task": "text",
    "model.hidden_size": 128,
    "model.num_heads": 2,
    "model.num_layers": 2,
    "model.max_positions": 128,
    "data.max_length": 128,
    "train.compute_dtype": "bfloat16",
    "model.position": scheme,
  }
  tokens = jax.random.randint(jax.random.PRNGKey(1), (8, 129), 4, 64)
  batch = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:]}
  losses, texts = {}, {}
  for impl in ("auto", "xla"):
    config = tiny_config(**base, **{"model.attention_impl": impl})
    graphdef, state, tx, schedule = step_lib.create_state(config, 64, 64)
    attention.last_path.clear()
    lowered = jax.jit(
      step_lib.make_train_step(graphdef, tx, schedule, config, objectives.get("lm"))
    ).lower(state, batch)
    compiled = lowered.compile()
    texts[impl] = compiled.as_text()
    _, m = compiled(state, batch)
    losses[impl] = float(m["loss"])
    if impl == "auto":
      path = dict(attention.last_path)
  fused = bool(re.search(r"cudnn\$fmha|__cudnn\$fmha", texts["auto"]))
  if scheme == "rope":  # no bias: nothing keeps cuDNN from it
    assert fused and path["used"] == "cudnn", path
  else:  # ALiBi: cuDNN with a bias, or the fallback says why
    assert fused or (path["used"] == "xla" and path["reason"]), path
  assert not re.search(r"cudnn\$fmha", texts["xla"])
  assert abs(losses["auto"] - losses["xla"]) <= 2e-2 * abs(losses["xla"]), losses

  model = step_lib.merge_for_compute(graphdef, state.params, config)
  seq = tokens[:2, :40]
  full = model(seq).astype(jnp.float32)
  inc, _ = decode_in_steps(model.decode, seq, model.init_cache(2), prefill=16)
  inc = inc.astype(jnp.float32)
  assert np.abs(np.asarray(inc - full)).max() <= 5e-2 * np.abs(np.asarray(full)).max()
