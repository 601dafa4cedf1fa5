"""A full-size run planned before it is launched: parameters, FLOPs, memory, time.

:func:`plan` builds the model and the train step of a config at its real shapes without
allocating them (``nnx.eval_shape``, ``jax.eval_shape``, ``jax.jit(step).lower`` on
abstract inputs) and reports, for a device of :data:`DEVICES`: parameters, FLOPs per step
(analytic 6N + 12·L·d·T per target token, and XLA's cost analysis), bytes per device,
whether it fits, the largest batch that would, and the step time at a stated MFU.
Documented in docs/scale.md#planning-a-full-size-run.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from attention_jax import data, model_setup, objectives
from attention_jax import step as step_lib
from attention_jax.benchmarks import model as bench_model
from attention_jax.errors import ConfigError

TFLOPS = 1e12
GB = 1e9
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class Device:
  """One accelerator: dense peak FLOP/s by compute dtype, memory, sources."""

  name: str
  peak: dict[str, float]  # compute dtype -> dense FLOP/s the matmuls reach
  memory_bytes: float
  source: str


# Vendor dense (no sparsity) peaks. float32 on NVIDIA: XLA's default matmul
# precision takes TF32 tensor cores (the benchmarks' MFU uses the same peak);
# plain FP32 is listed in the source note. On TPUs a float32 matmul at default
# precision runs as one bfloat16 pass.
DEVICES: dict[str, Device] = {
  "h100": Device(
    "NVIDIA H100 SXM5 80GB",
    {"bfloat16": 989.4 * TFLOPS, "float32": 494.7 * TFLOPS},
    80 * GB,
    "NVIDIA H100 Tensor Core GPU datasheet: BF16 989.4, TF32 494.7, FP32 66.9 TFLOP/s "
    "dense (SXM5); 80 GB HBM3",
  ),
  "h200": Device(
    "NVIDIA H200 SXM 141GB",
    {"bfloat16": 989.4 * TFLOPS, "float32": 494.7 * TFLOPS},
    141 * GB,
    "NVIDIA H200 Tensor Core GPU datasheet: BF16 989.4, TF32 494.7, FP32 66.9 TFLOP/s "
    "dense (SXM); 141 GB HBM3e",
  ),
  "a100": Device(
    "NVIDIA A100 SXM4 80GB",
    {"bfloat16": 312 * TFLOPS, "float32": 156 * TFLOPS},
    80 * GB,
    "NVIDIA A100 Tensor Core GPU datasheet: BF16 312, TF32 156, FP32 19.5 TFLOP/s dense; "
    "80 GB HBM2e",
  ),
  "tpu-v4": Device(
    "Google TPU v4 (one chip)",
    {"bfloat16": 275 * TFLOPS, "float32": 275 * TFLOPS},
    32 * GIB,
    "cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16 per chip, 32 GiB HBM2 per chip",
  ),
  "tpu-v5e": Device(
    "Google TPU v5e (one chip)",
    {"bfloat16": 197 * TFLOPS, "float32": 197 * TFLOPS},
    16 * GIB,
    "cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16 per chip, 16 GiB HBM2 per chip",
  ),
}
CPU = "cpu"  # this machine: measured matmul peak, physical memory
MODES = ("analytic", "lower", "compile")
USABLE_MEMORY = 0.9  # of the device's memory: room for XLA's workspace and fragmentation
DEFAULT_MFU = 0.4


def device_names() -> tuple[str, ...]:
  return (*DEVICES, CPU)


def _cpu_device(dtype: str) -> Device:
  peak, source = bench_model.peak_for(dtype)
  pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  return Device("this CPU", {dtype: peak}, float(pages), f"{source}; physical memory")


# --------------------------------------------------------------------------
# Shapes


def _text_vocab_size(config, assumptions: list[str]) -> int:
  d = config.data
  if d.task == "text":
    assumptions.append(
      "vocabulary: data.task=text builds a character vocabulary from the file; assumed 256"
    )
    return 256
  if d.tokenizer == "sentencepiece":
    assumptions.append(f"vocabulary: data.sp_vocab_size={d.sp_vocab_size} pieces per side")
    return d.sp_vocab_size
  if d.max_vocab > 0:
    assumptions.append(f"vocabulary: data.max_vocab={d.max_vocab} + 4 special tokens per side")
    return d.max_vocab + 4
  assumptions.append(
    f"vocabulary: data.tokenizer={d.tokenizer!r} keeps every token (data.max_vocab=0); "
    "assumed 32,000 per side"
  )
  return 32_000


def batch_shapes(config, assumptions: list[str]) -> tuple[int, int, str, Any, dict]:
  """``(src vocab, tgt vocab, objective name, task or None, batch of
  ShapeDtypeStruct)`` at the config's real training shapes."""
  B = config.train.batch_size
  if not data.is_text_task(config.data.task):
    task = data.make_task(config)
    batch = next(task.train_iterator())
    shapes = {k: jax.ShapeDtypeStruct((B, *v.shape[1:]), v.dtype) for k, v in batch.items()}
    assumptions.append(
      f"data: the synthetic task {config.data.task!r} built here; shapes of one training batch"
    )
    return len(task.src_vocab), len(task.tgt_vocab), task.objective, task, shapes
  V = _text_vocab_size(config, assumptions)
  T = config.data.max_length
  objective = data.task_class(config.data.task).objective
  i32 = lambda *s: jax.ShapeDtypeStruct(s, jnp.int32)  # noqa: E731 - a shape shorthand
  if objective == "lm":
    shapes = {"inputs": i32(B, T), "targets": i32(B, T)}
  else:
    shapes = {"src": i32(B, T), "tgt_in": i32(B, T + 1), "tgt_out": i32(B, T + 1)}
  assumptions.append(
    f"data: every batch at the longest bucket, data.max_length={T} tokens "
    "(real batches are bucketed by length, most shorter)"
  )
  return V, V, objective, None, shapes


def lookup_only_params(config, params) -> int:
  """Parameters of embedding tables used only as lookups: the source
  embedding, and the target one unless it is also the output projection
  (``model.tie_embeddings`` where the model reads it). Position tables are
  left out of N by the benchmarks' count already."""
  reads_tie = "tie_embeddings" in model_setup.model_keys_read(config)
  tied = reads_tie and config.model.tie_embeddings
  total = 0
  for path, v in nnx.to_flat_state(params):
    top = str(path[0])
    if top == "src_embed" or (top in ("tgt_embed", "tok_embed") and not tied):
      total += math.prod(v.get_value().shape)
  return total


# --------------------------------------------------------------------------
# Memory


def _nbytes(tree) -> int:
  return int(sum(math.prod(x.shape) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _analytic_activations(config, batch, V: int) -> float:
  """Bytes saved for the backward pass, roughly (±50%): per Transformer layer
  B·T·d·(34 + 5·h·T/d) 16-bit values (Korthikanti et al. 2022, eq. 2; twice
  for float32; a decoder layer with cross-attention counted 1.5×); per
  recurrent layer ~8 states of H per token (gates, states, attention's
  context) plus B·T_tgt·T_src attention weights ×3; plus the logits and their
  gradient in float32."""
  m = config.model
  B = config.train.batch_size
  widths = [v.shape[1] for v in batch.values() if len(v.shape) >= 2]
  T = max(widths) if widths else 1
  scale = 1.0 if config.train.compute_dtype == "bfloat16" else 2.0
  d = m.hidden_size
  if m.name in ("transformer", "gpt"):
    per_layer = B * T * d * (34 + 5 * m.num_heads * T / d) * scale
    layers = m.num_layers * (1 if m.name == "gpt" else 2.5)
    acts = per_layer * layers
  else:
    states = 8 * B * T * d * m.num_layers * 4 * (2 if m.name != "sequence_rnn" else 1)
    attn = 3 * B * T * T * 4 if m.name in ("rnnsearch", "luong") else 0
    acts = states + attn
  logits = 2 * B * T * V * 4 if m.name != "sequence_rnn" else 0
  return float(acts + logits)


# --------------------------------------------------------------------------
# The plan


def plan(
  config,
  device: str = "h100",
  *,
  mode: str = "lower",
  mfu: float = DEFAULT_MFU,
  num_devices: int = 1,
) -> dict[str, Any]:
  """The plan of ``config`` on ``num_devices`` of ``device`` (data parallel:
  parameters and optimizer state replicated, the batch split). ``mode``:
  ``analytic`` (abstract shapes only), ``lower`` (+ XLA's FLOP count),
  ``compile`` (+ the compiled step's memory). Returns the JSON-ready plan."""
  if device not in device_names():
    raise ConfigError(f"--device {device!r}: allowed: {', '.join(device_names())}")
  if mode not in MODES:
    raise ConfigError(f"--mode {mode!r}: allowed: {', '.join(MODES)}")
  if not 0 < mfu <= 1:
    raise ConfigError(f"--mfu must be in (0, 1], got {mfu}")
  if num_devices < 1 or config.train.batch_size % num_devices:
    raise ConfigError(
      f"--devices {num_devices}: must be >= 1 and divide train.batch_size "
      f"({config.train.batch_size})"
    )
  assumptions: list[str] = []
  V_src, V_tgt, objective_name, task, batch = batch_shapes(config, assumptions)

  abstract_model = nnx.eval_shape(lambda: model_setup.make_model(config, V_src, V_tgt))
  graphdef, params = nnx.split(abstract_model, nnx.Param)
  tx, schedule = step_lib.make_optimizer(config)
  opt_state = jax.eval_shape(tx.init, params)
  state = step_lib.TrainState(
    step=jax.ShapeDtypeStruct((), jnp.int32),
    params=params,
    opt_state=opt_state,
    rng=jax.eval_shape(lambda: jax.random.PRNGKey(0)),
  )
  n_params = int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))

  # Analytic FLOPs (the benchmarks' count): per target token, at this T.
  tgt_key = "tgt_out" if "tgt_out" in batch else next(iter(batch))
  tgt = batch[tgt_key].shape
  T = tgt[1] if len(tgt) >= 2 else 1
  if config.model.name == "gpt" and "src" in batch:  # decoder-only: source, then target
    T += batch["src"].shape[1]
  tokens = config.train.batch_size * T
  flops_config = config.copy_and_resolve_references()
  with flops_config.unlocked():
    flops_config.data.max_length = T
  per_token = bench_model.flops_per_token(config.model.name, flops_config, params)
  benchmarks_count = float(per_token * tokens)
  lookups = lookup_only_params(config, params)
  analytic = float((per_token - 6 * lookups) * tokens)
  assumptions.append(
    "FLOPs: analytic 6N + 12·L·d·T per target token (PaLM appendix B; "
    f"benchmarks/model.py), {tokens:,} tokens per step (target tokens; a decoder-only "
    "model on a sequence-to-sequence task reads source and target), with N less the "
    f"{lookups:,} parameters of embedding tables that are only looked up (no "
    f"matmul); the benchmarks' count with them: {benchmarks_count:.3e}"
  )

  xla_flops = None
  temp_bytes = None
  if mode in ("lower", "compile"):
    objective = objectives.get(objective_name, task, config)
    step_fn = step_lib.make_train_step(graphdef, tx, schedule, config, objective)
    lowered = jax.jit(step_fn).lower(state, batch)
    cost = lowered.cost_analysis() or {}
    if isinstance(cost, list):  # older jax: one dict per computation
      cost = cost[0] if cost else {}
    xla_flops = float(cost.get("flops", 0.0)) or None
    if config.model.name not in ("transformer", "gpt") or config.model.scan_layers:
      assumptions.append(
        "XLA FLOPs: the cost analysis counts a while loop's body once, so a "
        "recurrent scan (or scan_layers) reads low; the analytic count is used"
      )
    if mode == "compile":
      mem = lowered.compile().memory_analysis()
      temp_bytes = float(getattr(mem, "temp_size_in_bytes", 0)) if mem is not None else None

  dev = _cpu_device(config.train.compute_dtype) if device == CPU else DEVICES[device]
  peak = dev.peak[config.train.compute_dtype]
  params_bytes = _nbytes(params)
  opt_bytes = _nbytes(opt_state)
  grads_bytes = params_bytes
  if temp_bytes is not None:
    activations = temp_bytes / num_devices
    how = (
      f"activations: the compiled step's temporary buffers on this machine's backend "
      f"({jax.default_backend()}), divided by {num_devices} device(s); includes the gradients"
    )
    grads_bytes = 0
  else:
    activations = _analytic_activations(config, batch, V_tgt) / num_devices
    how = (
      "activations: analytic estimate (Korthikanti et al. 2022 per Transformer "
      "layer; ~8 states per recurrent layer and token; logits), roughly ±50%"
    )
  assumptions.append(how)
  fixed = params_bytes + opt_bytes + grads_bytes
  total = fixed + activations
  usable = USABLE_MEMORY * dev.memory_bytes
  fits = total <= usable
  per_example = activations / max(config.train.batch_size // num_devices, 1)
  largest = int((usable - fixed) // per_example) if per_example > 0 else None
  if largest is not None:
    largest = max(0, largest) * num_devices
  step_seconds = analytic / (num_devices * peak * mfu)
  run_hours = step_seconds * config.train.steps / 3600
  assumptions.append(
    f"time: {mfu:.0%} MFU of {num_devices} × {dev.name} at "
    f"{peak / TFLOPS:,.1f} TFLOP/s ({config.train.compute_dtype}; {dev.source}); "
    "evaluation, checkpoints and input not counted"
  )
  if config.model.name not in ("transformer", "gpt"):
    assumptions.append(
      "recurrent models run a sequential scan: expect an MFU well below a "
      "Transformer's (measure it: tools/gpu_check.sh)"
    )
  assumptions.append(
    f"memory: fits = total <= {USABLE_MEMORY:.0%} of {dev.memory_bytes / GB:,.1f} GB; "
    "parameters and optimizer state replicated on every device (float32)"
  )
  warning = None
  if not fits:
    warning = (
      f"does not fit: {total / GB:,.1f} GB per device > {usable / GB:,.1f} GB usable on "
      f"{dev.name}; the largest batch that fits is about {largest} "
      f"(train.batch_size={config.train.batch_size})"
    )
  return {
    "config": {"model": config.model.name, "task": config.data.task},
    "device": dev.name,
    "num_devices": num_devices,
    "mode": mode,
    "params": n_params,
    "flops_per_step": analytic,
    "flops_per_step_xla": xla_flops,
    "flops_per_step_benchmarks": benchmarks_count,
    "bytes_per_device": {
      "params": params_bytes,
      "optimizer": opt_bytes,
      "gradients": grads_bytes,
      "activations": activations,
      "total": total,
      "device_memory": dev.memory_bytes,
    },
    "fits": bool(fits),
    "largest_batch": largest,
    "warning": warning,
    "step_seconds": step_seconds,
    "run_hours": run_hours,
    "steps": config.train.steps,
    "batch_size": config.train.batch_size,
    "compute_dtype": config.train.compute_dtype,
    "mfu": mfu,
    "assumptions": assumptions,
  }


def format_plan(p: dict[str, Any]) -> str:
  """The lines ``experiments.plan`` prints."""
  b = p["bytes_per_device"]
  xla = p["flops_per_step_xla"]
  ratio = f" ({xla / p['flops_per_step']:.2f}× analytic)" if xla else ""
  lines = [
    f"plan: {p['config']['model']} on {p['num_devices']} × {p['device']} "
    f"({p['mode']}; batch {p['batch_size']}, {p['compute_dtype']}, {p['steps']:,} steps)",
    f"  parameters          {p['params']:,} ({p['params'] / 1e6:,.1f}M)",
    f"  FLOPs per step      analytic {p['flops_per_step']:.3e}; XLA "
    + (f"{xla:.3e}{ratio}" if xla else "not lowered (--mode analytic)"),
    f"  memory per device   params {b['params'] / GB:,.2f} GB + optimizer "
    f"{b['optimizer'] / GB:,.2f} GB + gradients {b['gradients'] / GB:,.2f} GB + activations "
    f"{b['activations'] / GB:,.2f} GB = {b['total'] / GB:,.2f} GB of "
    f"{b['device_memory'] / GB:,.1f} GB",
    f"  fits                {'yes' if p['fits'] else 'NO'}"
    + (f" (largest batch about {p['largest_batch']})" if p["largest_batch"] is not None else ""),
    f"  step time           {p['step_seconds'] * 1e3:,.1f} ms at {p['mfu']:.0%} MFU; "
    f"run {p['run_hours']:,.2f} h",
  ]
  if p["warning"]:
    lines.append(f"  WARNING: {p['warning']}")
  lines.append("  assumptions:")
  lines += [f"    - {a}" for a in p["assumptions"]]
  return "\n".join(lines)
