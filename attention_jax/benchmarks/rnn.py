"""Suite ``rnn``: one RNN layer forward + backward, ours against flax and torch.

Loss ``mean(y**2)``, gradients w.r.t. every weight, the same weights in every row (ours
copied into flax and torch); ``max_abs_diff`` is each row's forward distance from ours.
Variants: ``ours`` (:data:`rnn.BACKEND_DEFAULTS`), ``autodiff``/``fused`` (JAX's transpose
of the scan / the custom VJP), each with ``_hoist``, and ``ours_cho`` (the paper's GRU).
Documented in docs/performance.md#recurrent-layers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention_jax import rnn
from attention_jax.benchmarks import timing

COLUMNS = ["cell", "shape", "impl", "median_ms", "vs_torch", "vs_flax", "max_abs_diff"]

# (B, T, H); input size n_in = H.
CPU_SHAPES = [(64, 50, 256), (8, 50, 256)]
# On a GPU, sized so that `--suite all` fits a few minutes: the LSTM at the two
# shapes of the cuDNN comparison, the GRU at the first.
GPU_SHAPES = {"lstm": [(64, 100, 512), (256, 100, 1024)], "gru": [(64, 100, 512)]}
QUICK_SHAPES = [(16, 20, 64)]


def _torch():
  try:
    import torch  # optional: the torch rows run only where it is installed

    return torch
  except ImportError:
    return None


def _variants(backend: str, quick: bool):
  if backend != "cpu" and not quick:  # the scan options that matter there
    return {
      "ours": {},
      "autodiff": dict(backward="autodiff", hoist_input_projection=False, unroll=1),
      "fused_hoist": dict(backward="fused", hoist_input_projection=True, unroll=1),
      "fused_hoist_u8": dict(backward="fused", hoist_input_projection=True, unroll=8),
    }
  v = {
    "ours": {},
    "autodiff": dict(backward="autodiff", hoist_input_projection=False, unroll=1),
    "autodiff_hoist": dict(backward="autodiff", hoist_input_projection=True, unroll=1),
    "fused": dict(backward="fused", hoist_input_projection=False, unroll=1),
    "fused_hoist": dict(backward="fused", hoist_input_projection=True, unroll=1),
  }
  return v


def _case(
  kind: str,
  B: int,
  T: int,
  H: int,
  backend: str,
  quick: bool,
  rounds: int,
  iters: int,
  budget_s: float | None,
):

  n_in = H
  torch = _torch()
  x_np = np.random.default_rng(0).standard_normal((B, T, n_in)).astype(np.float32)
  x = jnp.asarray(x_np)
  options = {"reset_after": True} if kind == "gru" else {}
  ours = rnn.make_cell(kind, n_in, H, rngs=nnx.Rngs(0), **options)
  gdef, params = nnx.split(ours)
  Wi, bi = np.asarray(ours.input_kernel[...]), np.asarray(ours.input_bias[...])
  Wh = np.asarray(ours.recurrent_kernel[...])
  bh = np.asarray(ours.recurrent_bias[...]) if kind == "gru" else np.zeros_like(bi)

  def make_ours(opts, cell_def=gdef, cell_params=params):
    def loss(p, x):
      _, ys = rnn.scan(nnx.merge(cell_def, p), x, **opts)
      return jnp.mean(ys**2)

    grad = jax.jit(jax.grad(loss))
    fwd = jax.jit(lambda p, x: rnn.scan(nnx.merge(cell_def, p), x, **opts)[1])
    return (
      lambda: jax.block_until_ready(grad(cell_params, x)),
      lambda: np.asarray(fwd(cell_params, x)),
    )

  variants, forwards = {}, {}
  for name, opts in _variants(backend, quick).items():
    variants[name], forwards[name] = make_ours(opts)
  cho_diff = None
  if kind == "gru":
    cho = rnn.GRUCell(n_in, H, reset_after=False, rngs=nnx.Rngs(0))
    cdef, cparams = nnx.split(cho)
    variants["ours_cho"], cho_forward = make_ours({}, cdef, cparams)

    @jax.jit
    def cho_loop(p, x):  # the reference: one cell step per time step
      cell, h, ys = nnx.merge(cdef, p), jnp.zeros((B, H)), []
      for t in range(T):
        h, y = cell(h, x[:, t])
        ys.append(y)
      return jnp.stack(ys, 1)

    cho_diff = float(np.max(np.abs(cho_forward() - np.asarray(cho_loop(cparams, x)))))

  # flax nnx.RNN with our weights.
  if kind == "lstm":
    fcell = nnx.OptimizedLSTMCell(n_in, H, rngs=nnx.Rngs(0))
    fcell.dense_i.kernel[...] = jnp.asarray(Wi)
    fcell.dense_h.kernel[...] = jnp.asarray(Wh)
    fcell.dense_h.bias[...] = jnp.asarray(bi)
  else:
    fcell = nnx.GRUCell(n_in, H, rngs=nnx.Rngs(0))
    fcell.dense_i.kernel[...] = jnp.asarray(Wi)
    fcell.dense_i.bias[...] = jnp.asarray(bi)
    fcell.dense_h.kernel[...] = jnp.asarray(Wh)  # recurrent bias is 0
  frnn = nnx.RNN(fcell, rngs=False)
  fdef, fparams = nnx.split(frnn)
  zeros = jnp.zeros((B, H))
  carry0 = (zeros, zeros) if kind == "lstm" else zeros

  def floss(p, x):
    return jnp.mean(nnx.merge(fdef, p)(x, initial_carry=carry0) ** 2)

  fgrad = jax.jit(jax.grad(floss))
  ffwd = jax.jit(lambda p, x: nnx.merge(fdef, p)(x, initial_carry=carry0))
  variants["flax_nnx"] = lambda: jax.block_until_ready(fgrad(fparams, x))
  forwards["flax_nnx"] = lambda: np.asarray(ffwd(fparams, x))

  if torch is not None:
    torch.manual_seed(0)
    tdev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
    tmod = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(n_in, H, batch_first=True).to(tdev)
    with torch.no_grad():
      tmod.weight_ih_l0.copy_(torch.from_numpy(Wi.T.copy()))
      tmod.weight_hh_l0.copy_(torch.from_numpy(Wh.T.copy()))
      tmod.bias_ih_l0.copy_(torch.from_numpy(bi.copy()))
      tmod.bias_hh_l0.copy_(torch.from_numpy(bh.copy()))
    tparams = list(tmod.parameters())
    tx = torch.from_numpy(x_np).to(tdev)

    def torch_step():
      y, _ = tmod(tx)
      torch.autograd.grad(y.pow(2).mean(), tparams)
      sync()

    def torch_fwd():
      with torch.no_grad():
        return tmod(tx)[0].cpu().numpy()

    variants["torch"], forwards["torch"] = torch_step, torch_fwd

  reference = forwards["ours"]()
  diffs = {n: float(np.max(np.abs(f() - reference))) for n, f in forwards.items()}
  if cho_diff is not None:
    diffs["ours_cho"] = cho_diff
  ref_name = "torch" if torch is not None else "flax_nnx"
  res = timing.bench(variants, ref_name, rounds=rounds, iters=iters, budget_s=budget_s)
  flax_ms = res["flax_nnx"]["median_ms"]
  rows = []
  for name, r in res.items():
    rows.append(
      {
        "cell": kind,
        "shape": f"B{B} T{T} H{H}",
        "impl": name,
        "median_ms": r["median_ms"],
        "vs_torch": r["ratio"] if torch is not None else "",
        "vs_flax": r["median_ms"] / flax_ms,
        "max_abs_diff": diffs.get(name, ""),
      }
    )
  return rows


def run(quick: bool = False) -> list[dict]:
  backend = jax.default_backend()
  gpu = backend != "cpu" and not quick
  rounds, iters = (3, 1) if quick else (21, 2)
  rows = []
  for kind in ("lstm", "gru"):
    shapes = QUICK_SHAPES if quick else GPU_SHAPES[kind] if gpu else CPU_SHAPES
    for B, T, H in shapes:
      try:
        rows += _case(
          kind,
          B,
          T,
          H,
          backend,
          quick,
          rounds,
          iters,
          budget_s=5.0 if quick else 10.0 if gpu else 90.0,
        )
      except Exception as e:  # noqa: BLE001 - one failing case must not lose the others
        msg = " ".join(str(e).split())[:300]
        print(f"rnn suite: {kind} B{B} T{T} H{H} failed: {type(e).__name__}: {msg}", flush=True)
        rows.append(
          {
            "cell": kind,
            "shape": f"B{B} T{T} H{H}",
            "impl": "FAILED",
            "max_abs_diff": f"{type(e).__name__}: {msg[:120]}",
          }
        )
  return rows
