"""Suite ``model``: training-step throughput and model FLOPs utilisation.

One jitted train step per registered model on random tokens; tokens/s and, for the
attention models, MFU = FLOPs/token × tokens/s ÷ peak with FLOPs/token = 6N + 12·L·d·T
(PaLM appendix B; nanoGPT ``estimate_mfu``). The peak is the vendor's dense figure for the
dtype the step's matmuls take, or on a CPU a large matmul measured in the same process.
Where torch is installed, the same model in PyTorch is timed beside ours as a reference
(docs/performance.md#whole-models-against-pytorch).
Documented in docs/performance.md#training-throughput-and-mfu.
"""

from __future__ import annotations

import resource
import shutil
import signal
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
  "impl",
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
  "vs_torch",
  "vs_torch_compile",
  "init_loss",
  "loss_diff",
  "faults_per_step",
  "peak_tflops",
  "peak_source",
  "note",
]

# The fields printed as each model finishes.
PROGRESS = (
  "model",
  "size",
  "impl",
  "step_ms",
  "vs_torch",
  "vs_torch_compile",
  "loss_diff",
  "faults_per_step",
  "note",
)

# A torch.compile row is dropped (with the reason) when compiling its step
# (the first calls, forward and backward) takes longer than this many seconds:
# the compile is stopped there (``experiments.benchmark --torch_compile_limit``).
COMPILE_LIMIT_S = 180.0

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
    # Bahdanau et al. 2014's RNNsearch-50 sizes, for both recurrent models.
    bahdanau_h1000 = {
      "model.hidden_size": 1000,
      "model.embed_dim": 620,
      "model.vocab_size": 30000,
      "data.max_length": 50,
      "train.batch_size": 80,
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
    ] + [(name, "H1000", bahdanau_h1000) for name in ("rnn_encdec", "rnnsearch")]
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
  config = config_lib.base_config()
  config.model.name = name
  config.train.warmup_steps = 0
  for key, value in overrides.items():
    if key == "model.vocab_size":
      continue
    section, leaf = key.split(".")
    config[section][leaf] = value
  return config


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
  matmul); L counts every stack (encoder + decoder for ``transformer``); the
  attention term is not halved for causal masks."""
  n_params = sum(x.size for x in jax.tree.leaves(params))
  N = n_params - _position_params(params)
  L = config.model.num_layers * (1 if name == "gpt" else 2)
  return 6 * N + 12 * L * config.model.hidden_size * config.data.max_length


def _torch():
  try:
    import torch  # optional: the reference rows run only where it is installed

    return torch
  except ImportError:
    return None


def _compiler() -> str | None:
  """Why torch.compile cannot run here (no C compiler for inductor), or None."""
  if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang", "g++")):
    return "no C compiler found (torch.compile's inductor needs one)"
  return None


class _CompileTimeout(Exception):
  pass


def _compile_within(step, limit_s: float) -> tuple[str | None, float]:
  """Runs ``step`` twice (torch.compile compiles forward and backward in the
  first calls), stopped by SIGALRM after ``limit_s`` seconds (re-raised every
  second: the compiler catches and logs some exceptions and carries on).
  Returns ``(why it was stopped or failed, or None; seconds taken)``."""
  armed = [True]

  def alarm(signum, frame):
    if armed[0]:
      raise _CompileTimeout

  old = signal.signal(signal.SIGALRM, alarm)
  signal.setitimer(signal.ITIMER_REAL, limit_s, 1.0)
  t0 = time.perf_counter()
  try:
    for _ in range(2):
      step()
    armed[0] = False
    return None, time.perf_counter() - t0
  except Exception as e:  # noqa: BLE001 - a compiler failure or timeout drops this row only
    armed[0] = False
    chain, cause = [], e
    while cause is not None and len(chain) < 20:
      chain.append(cause)
      cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, _CompileTimeout) for c in chain):
      return f"compile stopped at the limit of {limit_s:.0f} s", time.perf_counter() - t0
    msg = " ".join(str(e).split())[:120]
    return f"torch.compile failed: {type(e).__name__}: {msg}", time.perf_counter() - t0
  finally:
    armed[0] = False
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


def _torch_steps(name, config, params, batch, quick: bool):
  """The torch reference: ``(variants {impl: step}, rows {impl: fields})``."""
  torch = _torch()
  if torch is None:
    return {}, {"torch": {"note": "torch not installed"}}
  import attention_jax.benchmarks.torch_models as torch_models

  dev = "cuda" if torch.cuda.is_available() else "cpu"
  sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
  bf16 = config.train.compute_dtype == "bfloat16"
  pure = jax.tree.map(np.asarray, params.to_pure_dict())
  model = torch_models.build(name, pure, config).to(dev)
  n_params = torch_models.n_params(model)
  inputs = {k: torch.from_numpy(np.asarray(v)).long().to(dev) for k, v in batch.items()}
  args = (inputs["inputs"],) if name == "gpt" else (inputs["src"], inputs["tgt_in"])
  targets = inputs["targets" if name == "gpt" else "tgt_out"]
  ls, clip = config.train.label_smoothing, config.train.grad_clip_norm
  trainable = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.Adam(trainable, lr=config.train.learning_rate)

  def loss_of(fwd):
    with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
      logits = fwd(*args)
    logits = logits.float()
    mask = targets != torch_models.PAD
    n = mask.sum().clamp(min=1)
    loss = (
      torch.nn.functional.cross_entropy(
        logits.flatten(0, 1), targets.flatten(), reduction="none", label_smoothing=ls
      )
      * mask.flatten()
    ).sum() / n
    correct = ((logits.argmax(-1) == targets) & mask).sum() / n
    return loss, correct

  def make_step(fwd):
    def step():
      opt.zero_grad(set_to_none=True)
      loss, _ = loss_of(fwd)
      loss.backward()
      if clip > 0:
        torch.nn.utils.clip_grad_norm_(trainable, clip)
      opt.step()
      sync()

    return step

  with torch.no_grad():
    init_loss = float(loss_of(model)[0])
  variants = {"torch": make_step(model)}
  rows = {"torch": {"init_loss": init_loss, "params_M": n_params / 1e6}}
  why = "not timed with --quick" if quick else _compiler()
  if why is None:
    compiled = torch.compile(model)
    why, compile_s = _compile_within(make_step(compiled), COMPILE_LIMIT_S)
    if why is not None:
      torch._dynamo.reset()  # drop what the stopped compile left
    else:
      variants["torch.compile"] = make_step(compiled)
      rows["torch.compile"] = {
        "init_loss": init_loss,
        "compile_s": compile_s,
        "params_M": n_params / 1e6,
      }
  if why is not None:
    print(f"model suite: {name}: torch.compile row skipped: {why}", flush=True)
    rows["torch.compile"] = {"note": f"skipped: {why}"}
  return variants, rows


def page_faults_per_call(fn, calls: int = 3) -> float:
  """Minor page faults of this process per call of ``fn`` (warm): pages
  touched for the first time, as when a freed buffer went back to the system
  (docs/performance.md#host-memory)."""
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(calls):
    fn()
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / calls


def _bench_one(name: str, label: str, overrides: dict, rounds: int, quick: bool = False) -> list:
  config = _config(name, overrides)
  V = overrides.get("model.vocab_size", 512)
  B, T = config.train.batch_size, config.data.max_length
  graphdef, state, tx, schedule = step_lib.make_train_state(config, V, V)
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
  init_loss = jax.jit(
    lambda p: objective.train_loss(
      step_lib.merge_for_compute(graphdef, p, config), batch, None, config
    )[0]
  )(state.params)
  init_loss = float(init_loss)
  variants, torch_rows = _torch_steps(name, config, state.params, batch, quick)
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

  steps = {"ours": run_step, **variants}
  res = timing.bench(steps, "ours", rounds=rounds, iters=3, warmup=2)
  faults = {impl: page_faults_per_call(fn) for impl, fn in steps.items()}
  ms = res["ours"]["median_ms"]
  tok_s = n_tokens / (ms / 1e3)
  row = {
    "model": name,
    "size": label,
    "impl": "ours",
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
    "init_loss": init_loss,
    "faults_per_step": faults["ours"],
    "peak_tflops": "",
    "peak_source": "",
  }
  for impl, column in (("torch", "vs_torch"), ("torch.compile", "vs_torch_compile")):
    row[column] = (
      timing.paired_ratio(res["ours"]["times_ms"], res[impl]["times_ms"]) if impl in res else ""
    )
  if name in ("gpt", "transformer"):
    achieved = fpt * tok_s
    row["tflops_per_sec"] = achieved / 1e12
    peak, source = peak_for(dtype)
    row.update(mfu=achieved / peak, peak_tflops=peak / 1e12, peak_source=source)
  rows = [row]
  for impl, fields in torch_rows.items():
    r = {"model": name, "size": label, "impl": impl, "batch": B, "seq_len": T, **fields}
    if impl in res:
      r["step_ms"] = res[impl]["median_ms"]
      r["faults_per_step"] = faults[impl]
      r["tokens_per_sec"] = n_tokens / (r["step_ms"] / 1e3)
    if "init_loss" in fields:
      r["loss_diff"] = abs(fields["init_loss"] - init_loss)
    rows.append(r)
  return rows


def run(quick: bool = False) -> list[dict]:
  on_gpu = jax.default_backend() == "gpu"
  rows = []
  for name, label, overrides in _cases(on_gpu, quick):
    if name not in models.MODELS:
      continue
    try:
      done = _bench_one(name, label, overrides, rounds=3 if quick else 7, quick=quick)
      rows += done
      for r in done:  # as each model finishes (a run stopped by a time limit keeps these)
        print("model suite:", {k: r[k] for k in PROGRESS if r.get(k, "") != ""}, flush=True)
    except Exception as e:  # noqa: BLE001 - one failing case (e.g. out of memory)
      msg = " ".join(str(e).split())[:300]  # must not lose the others
      print(f"model suite: {name} {label} failed: {type(e).__name__}: {msg}", flush=True)
      rows.append(
        {
          "model": name,
          "size": label,
          "impl": "ours",
          "dtype": "FAILED",
          "peak_source": f"{type(e).__name__}: {msg[:120]}",
        }
      )
  return rows
