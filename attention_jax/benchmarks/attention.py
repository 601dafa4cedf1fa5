"""Suite ``attention``: attention core and multi-head layer, forward + backward.

core  : softmax(q kᵀ/√h) v on given q, k, v; gradients w.r.t. q, k, v.
layer : x -> Q/K/V projections -> core -> output projection (no biases);
        gradients w.r.t. x and the four weight matrices.

Every variant (ours, ours_xla, jax_dpa, jax_dpa_cudnn on GPU, torch_sdpa, torch_mha)
computes the same math on the same inputs and weights, timed in this process, interleaved;
``ratio`` is time / torch SDPA (``jax.nn.dot_product_attention`` without torch).
Documented in docs/performance.md#attention.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention_jax import attention
from attention_jax.benchmarks import timing

COLUMNS = [
  "level",
  "shape",
  "causal",
  "dtype",
  "impl",
  "median_ms",
  "ratio",
  "ratio_min",
  "ratio_max",
  "tflops",
  "max_abs_diff",
  "parity",
]


def _max_abs_diff(out, want: np.ndarray) -> float:
  return float(np.abs(np.asarray(out, np.float32) - want).max())


def _parity(diff: float, tol: float) -> str:
  return "ok" if diff < tol else "FAIL"


def _shapes(quick: bool, gpu: bool):
  if gpu:
    full = [(16, 1024, 1024, 16, "bfloat16", (True,)), (8, 4096, 2048, 16, "bfloat16", (True,))]
    return [(4, 256, 512, 8, "bfloat16", (True,))] if quick else full
  if quick:
    return [(4, 64, 64, 4, "float32", (False, True))]
  return [(16, 256, 256, 8, "float32", (False, True))]


def our_layer(W: list, num_heads: int, implementation: str):
  """Our ``MultiHeadAttention`` (no biases) with the four (in, out) matrices
  ``W = [W_q, W_k, W_v, W_o]`` copied in. Returns ``nnx.split`` of it."""

  D = W[0].shape[0]
  N, h = num_heads, D // num_heads
  m = attention.MultiHeadAttention(
    D, N, use_bias=False, implementation=implementation, rngs=nnx.Rngs(0)
  )
  m.query.kernel.value = W[0].reshape(D, N, h)
  m.key.kernel.value = W[1].reshape(D, N, h)
  m.value.kernel.value = W[2].reshape(D, N, h)
  m.out.kernel.value = W[3].reshape(N, h, D)
  return nnx.split(m)


def torch_mha_layer(torch, W_np: list, num_heads: int, dtype, device):
  """``torch.nn.MultiheadAttention`` (no biases, batch first) computing the
  same function as :func:`our_layer` on the same matrices: its ``in_proj``
  rows are ``[W_q; W_k; W_v]`` as (out, in) matrices, ours transposed, and it
  splits heads into contiguous blocks of features as we do."""
  D = W_np[0].shape[0]
  mha = torch.nn.MultiheadAttention(D, num_heads, bias=False, batch_first=True)
  mha = mha.to(device, dtype)
  with torch.no_grad():
    mha.in_proj_weight.copy_(
      torch.tensor(np.concatenate([w.T for w in W_np[:3]]), dtype=dtype, device=device)
    )
    mha.out_proj.weight.copy_(torch.tensor(W_np[3].T, dtype=dtype, device=device))
  return mha


def _torch():
  try:
    import torch  # optional: the torch rows run only where it is installed
    import torch.nn.functional as F

    return torch, F
  except ImportError:
    return None, None


@dataclasses.dataclass
class _Case:
  """One shape's inputs and weights, in JAX and (when importable) torch."""

  B: int
  T: int
  D: int
  N: int
  dtype: str
  gpu: bool
  q: jax.Array  # [B, T, N, h]
  k: jax.Array
  v: jax.Array
  x: jax.Array  # [B, T, D]
  W: list  # four [D, D]
  W_np: list
  torch: Any = None  # the torch module, None when absent
  F: Any = None  # torch.nn.functional
  tdev: str = "cpu"
  tdt: Any = None
  tq: Any = None  # [B, N, T, h]
  tk: Any = None
  tv: Any = None
  tx: Any = None  # [B, T, D]
  tW: list | None = None

  @property
  def h(self) -> int:
    return self.D // self.N

  def sync(self) -> None:
    if self.tdev == "cuda":
      self.torch.cuda.synchronize()


def _case(B: int, T: int, D: int, N: int, dtype: str, gpu: bool, torch, F) -> _Case:
  h = D // N
  jdt = getattr(jnp, dtype)
  rng = np.random.default_rng(0)
  q_np, k_np, v_np = (rng.standard_normal((B, T, N, h)).astype(np.float32) for _ in range(3))
  x_np = rng.standard_normal((B, T, D)).astype(np.float32)
  W_np = [(rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32) for _ in range(4)]
  q, k, v = (jnp.asarray(a, jdt) for a in (q_np, k_np, v_np))
  case = _Case(
    B,
    T,
    D,
    N,
    dtype,
    gpu,
    q,
    k,
    v,
    jnp.asarray(x_np, jdt),
    [jnp.asarray(w, jdt) for w in W_np],
    W_np,
  )
  if torch is None:
    return case
  case.torch, case.F = torch, F
  case.tdev = tdev = "cuda" if torch.cuda.is_available() else "cpu"
  case.tdt = tdt = getattr(torch, dtype)
  case.tq, case.tk, case.tv = (
    torch.tensor(a, dtype=tdt, device=tdev).transpose(1, 2).contiguous().requires_grad_(True)
    for a in (q_np, k_np, v_np)
  )
  case.tx = torch.tensor(x_np, dtype=tdt, device=tdev, requires_grad=True)
  case.tW = [torch.tensor(w, dtype=tdt, device=tdev, requires_grad=True) for w in W_np]
  return case


def _loss(o):
  return jnp.mean(o.astype(jnp.float32) ** 2)


def _grad_fn(f, argnums):
  return jax.jit(jax.grad(lambda *a: _loss(f(*a)), argnums=argnums))


def _tol(dtype: str) -> float:
  """The largest ``max_abs_diff`` from ``jax_dpa`` that passes ``parity``."""
  return 2e-3 if dtype == "float32" else 5e-2


def _rows(level, shape, c: _Case, causal, flops, res, parity) -> list[dict]:
  return [
    {
      "level": level,
      "shape": shape,
      "causal": causal,
      "dtype": c.dtype,
      "impl": name,
      **r,
      "tflops": flops / (r["median_ms"] * 1e-3) / 1e12,
      "max_abs_diff": parity[name],
      "parity": _parity(parity[name], _tol(c.dtype)),
    }
    for name, r in res.items()
  ]


def _core_rows(c: _Case, causal: bool, rounds: int, iters: int) -> list[dict]:
  """softmax(q kᵀ/√h) v and its gradients w.r.t. q, k, v."""
  q, k, v = c.q, c.k, c.v

  def ours(q, k, v):
    return attention.scaled_dot_product_attention(q, k, v, is_causal=causal, implementation="auto")

  def jax_dpa(q, k, v, implementation="xla"):
    return jax.nn.dot_product_attention(q, k, v, is_causal=causal, implementation=implementation)

  core = {"ours": ours, "jax_dpa": jax_dpa}
  if c.gpu and c.dtype != "float32":
    core["jax_dpa_cudnn"] = functools.partial(jax_dpa, implementation="cudnn")
  want = np.asarray(jax_dpa(q, k, v), np.float32)
  variants, parity = {}, {}
  for name, f in core.items():
    try:
      parity[name] = _max_abs_diff(f(q, k, v), want)
      g = _grad_fn(f, (0, 1, 2))
      jax.block_until_ready(g(q, k, v))
    except Exception as e:  # noqa: BLE001 - e.g. cudnn missing on this GPU
      print(f"{name} unavailable: {type(e).__name__}: {str(e)[:200]}")
      continue
    variants[name] = lambda g=g: jax.block_until_ready(g(q, k, v))
  ref = "jax_dpa"
  if c.torch is not None:

    def t_core():
      o = c.F.scaled_dot_product_attention(c.tq, c.tk, c.tv, is_causal=causal)
      c.torch.autograd.grad(o.float().pow(2).mean(), [c.tq, c.tk, c.tv])
      c.sync()

    with c.torch.no_grad():
      o = c.F.scaled_dot_product_attention(c.tq, c.tk, c.tv, is_causal=causal)
    parity["torch_sdpa"] = _max_abs_diff(o.transpose(1, 2).float().cpu().numpy(), want)
    variants["torch_sdpa"] = t_core
    ref = "torch_sdpa"
  res = timing.bench(variants, ref, rounds=rounds, iters=iters)
  flops = 3.5 * 4.0 * c.B * c.T * c.T * c.D * (0.5 if causal else 1.0)
  return _rows("core", f"B{c.B} T{c.T} {c.N}x{c.h}", c, causal, flops, res, parity)


def _layer_rows(c: _Case, causal: bool, rounds: int, iters: int) -> list[dict]:
  """x -> projections -> core -> output projection; gradients w.r.t. x and W."""
  B, T, D, N, h = c.B, c.T, c.D, c.N, c.h

  def dpa_layer(x, W):
    qq, kk, vv = ((x @ w).reshape(B, T, N, h) for w in W[:3])
    o = jax.nn.dot_product_attention(qq, kk, vv, is_causal=causal, implementation="xla")
    return o.reshape(B, T, D) @ W[3]

  def our_forward(x, p, gdef):
    return nnx.merge(gdef, p)(x, is_causal=causal)[0]

  layer = {"jax_dpa": (dpa_layer, (c.x, c.W))}
  for name, impl in (("ours", "auto"), ("ours_xla", "xla")):
    gdef, params = our_layer(c.W, N, impl)
    layer[name] = (functools.partial(our_forward, gdef=gdef), (c.x, params))
  want = np.asarray(dpa_layer(c.x, c.W), np.float32)
  variants, parity = {}, {}
  for name, (f, args) in layer.items():
    parity[name] = _max_abs_diff(f(*args), want)
    g = _grad_fn(f, (0, 1))
    jax.block_until_ready(g(*args))
    variants[name] = lambda g=g, args=args: jax.block_until_ready(g(*args))
  ref = "jax_dpa"
  if c.torch is not None:
    torch, tx, tW = c.torch, c.tx, c.tW

    def torch_layer():
      qq, kk, vv = ((tx @ w).view(B, T, N, h).transpose(1, 2) for w in tW[:3])
      o = c.F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
      return o.transpose(1, 2).reshape(B, T, D) @ tW[3]

    def t_layer():
      torch.autograd.grad(torch_layer().float().pow(2).mean(), [tx] + tW)
      c.sync()

    mha = torch_mha_layer(torch, c.W_np, N, c.tdt, c.tdev)  # on our weights
    cmask = (
      torch.nn.Transformer.generate_square_subsequent_mask(T, device=c.tdev, dtype=c.tdt)
      if causal
      else None
    )

    def torch_mha():
      return mha(tx, tx, tx, need_weights=False, attn_mask=cmask, is_causal=causal)[0]

    def t_mha():
      torch.autograd.grad(torch_mha().float().pow(2).mean(), [tx] + list(mha.parameters()))
      c.sync()

    with torch.no_grad():
      parity["torch_sdpa"] = _max_abs_diff(torch_layer().float().cpu().numpy(), want)
      parity["torch_mha"] = _max_abs_diff(torch_mha().float().cpu().numpy(), want)
    variants["torch_sdpa"] = t_layer
    variants["torch_mha"] = t_mha
    ref = "torch_sdpa"
  res = timing.bench(variants, ref, rounds=rounds, iters=iters)
  flops_core = 3.5 * 4.0 * B * T * T * D * (0.5 if causal else 1.0)
  flops = flops_core + 3.0 * 8.0 * B * T * D * D
  return _rows("layer", f"B{B} T{T} D{D} {N} heads", c, causal, flops, res, parity)


def run(quick: bool = False) -> list[dict]:
  torch, F = _torch()
  print(
    f"attention suite: torch {'absent' if torch is None else torch.__version__}"
    f", load average at start {os.getloadavg()[0]:.1f}",
    flush=True,
  )
  gpu = jax.default_backend() == "gpu"
  rounds, iters = (3, 1) if quick else (11, 3)
  rows = []
  for B, T, D, N, dtype, causals in _shapes(quick, gpu):
    case = _case(B, T, D, N, dtype, gpu, torch, F)
    for causal in causals:
      rows += _core_rows(case, causal, rounds, iters)
      rows += _layer_rows(case, causal, rounds, iters)
  print(f"attention suite: load average at end {os.getloadavg()[0]:.1f}", flush=True)
  return rows
