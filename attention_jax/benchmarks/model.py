"""Suite ``model``: training-step throughput and model FLOPs utilisation.

For each registered model, one jitted train step (forward, backward, optax
update) on random tokens is timed; reported: tokens/s (target tokens for
seq2seq models, B·T for the LM) and, for the attention models,
MFU = FLOPs/token × tokens/s ÷ peak, with FLOPs/token = 6N + 12·L·d·T
(PaLM appendix B; nanoGPT ``estimate_mfu``; N = parameters less the position
table; L = layers of all stacks; the attention term is not halved for causal
masks). Peak, printed with its source in every row:

* on a known accelerator, the vendor's dense figure for the dtype the step's
  matrix products actually take — read from the lowered step
  (``precision.step_dtype``; ``dtype`` column), not from the config (bf16
  tensor cores, or TF32 for float32 matmuls on NVIDIA; a step mixing both is
  divided by the bf16 peak, the higher one);
* on a CPU, whose nominal peak (cores × clock × FMA width) depends on turbo
  and SMT that a VM does not report, the FLOP/s of one large square matmul of
  that dtype measured in the same process with the same clock — the best this
  CPU and XLA reach, so the MFU there reads "fraction of the matmul ceiling".

Each row also records ``compile_s`` (lowering + XLA compilation of the step)
and ``attention`` (the path ``model.attention_impl`` resolved to: ``cudnn``
fused attention, ``xla``, or our ``einsum``). On a GPU the GPT-2 sizes run
with ``model.scan_layers`` (one compiled block, scanned; see models/gpt.py).
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attention_jax import attention, models, objectives, precision
from attention_jax import config as config_lib
from attention_jax import step as step_lib
from attention_jax.benchmarks import timing

COLUMNS = [
  "model",
  "size",
  "dtype",
  "attention",
  "batch",
  "seq_len",
  "params_M",
  "compile_s",
  "step_ms",
  "tokens_per_sec",
  "tflops_per_sec",
  "mfu",
  "peak_tflops",
  "peak_source",
]

# Dense peak FLOP/s by (device kind substring, compute dtype).
PEAKS = {
  ("H100", "bfloat16"): 989.4e12,
  ("H100", "float32"): 494.7e12,  # TF32
  ("H200", "bfloat16"): 989.4e12,
  ("H200", "float32"): 494.7e12,
  ("A100", "bfloat16"): 312e12,
  ("A100", "float32"): 156e12,
  ("TPU v5p", "bfloat16"): 459e12,
  ("TPU v5 lite", "bfloat16"): 197e12,
}


def peak_flops(dtype: str) -> float | None:
  """The vendor's dense peak for this accelerator and dtype; None if unknown."""
  kind = getattr(jax.devices()[0], "device_kind", "")
  for (name, dt), peak in PEAKS.items():
    if name in kind and dt == dtype:
      return peak
  return None


def measured_matmul_flops(dtype: str, n: int = 2048, rounds: int = 5) -> float:
  """FLOP/s of a jitted ``(n, n) @ (n, n)`` matmul (2n³ FLOPs) in ``dtype``,
  median of ``rounds`` timed with :data:`timing.default_clock`."""
  a = jnp.ones((n, n), dtype) / n
  mm = jax.jit(lambda x: x @ x)

  def run():
    return jax.block_until_ready(mm(a))

  ms = timing.bench({"mm": run}, "mm", rounds=rounds, iters=2, warmup=1)["mm"]["median_ms"]
  return 2 * n**3 / (ms / 1e3)


_MEASURED: dict[str, float] = {}


def peak_for(dtype: str) -> tuple[float, str]:
  """``(peak FLOP/s, where it came from)`` for MFU in ``dtype`` (``mixed``:
  the bfloat16 peak, the higher one, so the MFU is not flattered)."""
  dtype = "bfloat16" if dtype == "mixed" else dtype
  peak = peak_flops(dtype)
  if peak:
    return peak, f"vendor dense {dtype}"
  if dtype not in _MEASURED:
    _MEASURED[dtype] = measured_matmul_flops(dtype)
  return _MEASURED[dtype], f"measured 2048² {dtype} matmul"


def _cases(on_gpu: bool, quick: bool) -> list[tuple[str, str, dict]]:
  """(model name, size label, config overrides)."""
  if on_gpu and not quick:
    gpt = {
      "data.max_length": 1024,
      "model.max_positions": 1024,
      "train.compute_dtype": "bfloat16",
      "model.vocab_size": 50304,
      "model.scan_layers": True,
    }
    return [
      (
        "gpt",
        "gpt2-small",
        {
          **gpt,
          "model.num_layers": 12,
          "model.hidden_size": 768,
          "model.num_heads": 12,
          "train.batch_size": 16,
        },
      ),
      (
        "gpt",
        "gpt2-medium",
        {
          **gpt,
          "model.num_layers": 24,
          "model.hidden_size": 1024,
          "model.num_heads": 16,
          "train.batch_size": 8,
        },
      ),
      (
        "transformer",
        "base",
        {
          "model.num_layers": 6,
          "model.hidden_size": 512,
          "model.num_heads": 8,
          "model.vocab_size": 32000,
          "data.max_length": 256,
          "train.batch_size": 64,
          "train.compute_dtype": "bfloat16",
        },
      ),
      (
        "rnn_encdec",
        "H1000",
        {
          "model.hidden_size": 1000,
          "model.embed_dim": 620,
          "model.vocab_size": 30000,
          "data.max_length": 50,
          "train.batch_size": 80,
        },
      ),
      (
        "rnnsearch",
        "H1000",
        {
          "model.hidden_size": 1000,
          "model.embed_dim": 620,
          "model.vocab_size": 30000,
          "data.max_length": 50,
          "train.batch_size": 80,
        },
      ),
    ]
  small = {
    "model.vocab_size": 512,
    "data.max_length": 64 if quick else 128,
    "train.batch_size": 8 if quick else 16,
  }
  tf = {"model.num_layers": 2, "model.hidden_size": 128, "model.num_heads": 4}
  rnn = {
    "model.hidden_size": 128,
    "model.embed_dim": 64,
    "model.vocab_size": 512,
    "data.max_length": 30,
    "train.batch_size": 64,
  }
  return [
    ("gpt", "L2-d128", {**small, **tf}),
    ("transformer", "L2-d128", {**small, **tf}),
    ("rnn_encdec", "H128", rnn),
    ("seq2seq_lstm", "H128", rnn),
    ("rnnsearch", "H128", rnn),
    ("luong", "H128", rnn),
  ]


def _config(name: str, overrides: dict):
  c = config_lib.base_config()
  c.model.name = name
  c.train.warmup_steps = 0
  for key, value in overrides.items():
    if key == "model.vocab_size":
      continue
    section, leaf = key.split(".")
    c[section][leaf] = value
  return c


def _position_params(params) -> int:
  flat = nnx.to_flat_state(params) if hasattr(nnx, "to_flat_state") else []
  total = 0
  for path, v in flat:
    if any("pos" in str(p) for p in path):
      total += np.size(v.value if hasattr(v, "value") else v)
  return total


def flops_per_token(name: str, config, params) -> float:
  """Training FLOPs per token, 6N + 12·L·d·T (forward 2N + attention 4·L·d·T,
  backward twice the forward). N excludes the position table (a lookup, no
  matmul); L counts every stack (encoder + decoder for ``transformer``)."""
  n_params = sum(x.size for x in jax.tree.leaves(params))
  N = n_params - _position_params(params)
  L = config.model.num_layers * (1 if name == "gpt" else 2)
  return 6 * N + 12 * L * config.model.hidden_size * config.data.max_length


def _bench_one(name: str, label: str, overrides: dict, rounds: int) -> dict:
  config = _config(name, overrides)
  V = overrides.get("model.vocab_size", 512)
  B, T = config.train.batch_size, config.data.max_length
  graphdef, state, tx, schedule = step_lib.create_state(config, V, V)
  objective = objectives.get("lm" if name == "gpt" else "seq2seq")
  rng = np.random.default_rng(0)

  def tokens(shape):
    return jnp.asarray(rng.integers(4, V, size=shape), jnp.int32)

  if name == "gpt":
    batch = {"inputs": tokens((B, T)), "targets": tokens((B, T))}
  else:
    batch = {"src": tokens((B, T)), "tgt_in": tokens((B, T)), "tgt_out": tokens((B, T))}
  n_tokens = B * T
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  fpt = flops_per_token(name, config, state.params)
  donate = (0,) if jax.default_backend() != "cpu" else ()
  t0 = time.perf_counter()
  attention.last_path.clear()
  lowered = jax.jit(
    step_lib.make_train_step(graphdef, tx, schedule, config, objective), donate_argnums=donate
  ).lower(state, batch)
  dtype = precision.step_dtype(lowered.as_text())  # what the products take
  used = attention.last_path.get("used", "")
  step = lowered.compile()
  compile_s = time.perf_counter() - t0
  holder = {"state": state}

  def run_step():
    holder["state"], m = step(holder["state"], batch)
    jax.block_until_ready(m["loss"])

  ms = timing.bench({name: run_step}, name, rounds=rounds, iters=3, warmup=2)[name]["median_ms"]
  tok_s = n_tokens / (ms / 1e3)
  row = {
    "model": name,
    "size": label,
    "dtype": dtype,
    "attention": used,
    "batch": B,
    "seq_len": T,
    "params_M": n_params / 1e6,
    "compile_s": compile_s,
    "step_ms": ms,
    "tokens_per_sec": tok_s,
    "tflops_per_sec": "",
    "mfu": "",
    "peak_tflops": "",
    "peak_source": "",
  }
  if name in ("gpt", "transformer"):
    achieved = fpt * tok_s
    row["tflops_per_sec"] = achieved / 1e12
    peak, source = peak_for(dtype)
    row.update(mfu=achieved / peak, peak_tflops=peak / 1e12, peak_source=source)
  return row


def run(quick: bool = False) -> list[dict]:
  on_gpu = jax.default_backend() == "gpu"
  rows = []
  for name, label, overrides in _cases(on_gpu, quick):
    if name not in models.MODELS:
      continue
    try:
      rows.append(_bench_one(name, label, overrides, rounds=3 if quick else 7))
    except Exception as e:  # noqa: BLE001 - one failing case (e.g. out of memory)
      msg = " ".join(str(e).split())[:300]  # must not lose the others
      print(f"model suite: {name} {label} failed: {type(e).__name__}: {msg}", flush=True)
      rows.append(
        {
          "model": name,
          "size": label,
          "dtype": "FAILED",
          "peak_source": f"{type(e).__name__}: {msg[:120]}",
        }
      )
  return rows
