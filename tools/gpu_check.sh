#!/usr/bin/env bash
# The GPU check, in one command, from the repository root of a GPU machine:
#
#   bash tools/gpu_check.sh [OUT_DIR]        # OUT_DIR default: $OUT, else /tmp/gpu_check
#
# Parts, each with its own time limit and log in OUT_DIR (a part that fails or
# runs out of time does not stop the next):
#   0. wheels: packages the machine lacks (ml-collections, tensorboardX; see
#      tools/gpu_wheels.txt) are installed from .whl/ when it holds any, into
#      /tmp/site (nothing else on the machine changes); then an import check.
#   1. python -m experiments.benchmark --suite all --json OUT_DIR/benchmark.json
#      (limit 280 s; the JSON is rewritten after each suite, so a suite that
#      runs out of time keeps the ones before it). Suites: model (GPT-2-small
#      L12 d768 B16 T1024 and GPT-2-medium L24 d1024 B8 in bf16, tokens/s and
#      MFU; Transformer-base; RNN models), attention (vs torch SDPA), rnn (vs
#      cuDNN nn.LSTM/GRU).
#   2. pytest tests/test_gpu.py (limit 150 s): cuDNN attention in bf16, the bf16
#      GPT step (also with RoPE and ALiBi), the fused RNN backward, one bf16
#      experiments.run. In one process: `-o addopts=` drops pyproject.toml's
#      `-n 2`, which needs pytest-xdist (not on every GPU machine).
#   3. python -m experiments.plan (limit 120 s) on this GPU, --mode compile (the
#      step's memory from XLA on the GPU itself): Transformer-base at the model
#      benchmark's shape (B64 T256 bf16), whose estimated step time is printed
#      beside the measured one, and configs/papers/vaswani2017.py at full size.
# It ends with a compact summary (also OUT_DIR/summary.txt). Plan: ~1 min of
# start-up and imports, <= 5 min for part 1, <= 2.5 min for part 2.
set -u
OUT_DIR="${1:-${OUT:-/tmp/gpu_check}}"
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
# Both JAX and torch allocate on the GPU in the benchmark process: leave torch room.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}"
t_start=$(date +%s)
elapsed() { echo $(( $(date +%s) - t_start )); }

# ---- 0. wheels and environment
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl > "$OUT_DIR/wheels.log" 2>&1 \
    || { echo "wheel install failed:"; tail -5 "$OUT_DIR/wheels.log"; exit 1; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
  echo "XLA_FLAGS=${XLA_FLAGS:-}"
  timeout 120 python3 -c "
import jax, flax, optax, orbax.checkpoint, ml_collections, tensorboardX, torch
print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__,
      'orbax', orbax.checkpoint.__version__, 'torch', torch.__version__)
print('devices', jax.devices(), 'backend', jax.default_backend())
import attention_jax.train, attention_jax.benchmarks.model"
} > "$OUT_DIR/env.log" 2>&1
env_rc=$?
cat "$OUT_DIR/env.log" | grep -v "^W0\|^I0" | head -8
if [ $env_rc -ne 0 ]; then echo "environment check failed (rc $env_rc): $OUT_DIR/env.log"; exit 1; fi
echo "[$(elapsed) s] environment ok"

# ---- 1. benchmark
timeout -k 10 280 python3 -m experiments.benchmark --suite all \
  --json "$OUT_DIR/benchmark.json" > "$OUT_DIR/benchmark.log" 2>&1
bench_rc=$?
echo "[$(elapsed) s] benchmark rc $bench_rc ($( [ $bench_rc = 124 ] && echo 'TIME LIMIT' || echo done))"

# ---- 2. GPU tests
timeout -k 10 150 python3 -m pytest -o addopts= -q -ra -p no:cacheprovider tests/test_gpu.py \
  > "$OUT_DIR/gpu_tests.log" 2>&1
tests_rc=$?
echo "[$(elapsed) s] GPU tests rc $tests_rc"

# ---- 3. plans, to check against the measurements
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
case "$gpu_name" in
  *H200*) plan_device=h200 ;; *A100*) plan_device=a100 ;; *) plan_device=h100 ;;
esac
timeout -k 10 120 bash -c "
python3 -m experiments.plan --config configs/papers/vaswani2017.py --device $plan_device \
  --mode compile --json '$OUT_DIR/plan_bench_shape.json' --config.train.batch_size=64 \
  --config.data.max_length=256 --config.data.sp_vocab_size=32000 \
  --config.train.compute_dtype=bfloat16 --config.model.dropout=0.0 --config.model.max_positions=512
python3 -m experiments.plan --config configs/papers/vaswani2017.py --device $plan_device \
  --mode compile --json '$OUT_DIR/plan_vaswani2017.json'
" > "$OUT_DIR/plan.log" 2>&1
plan_rc=$?
echo "[$(elapsed) s] plans rc $plan_rc"

# ---- summary
python3 - "$OUT_DIR" "$bench_rc" "$tests_rc" "$(elapsed)" "$plan_rc" <<'PY' | tee "$OUT_DIR/summary.txt"
import json, os, re, sys
out, bench_rc, tests_rc, total = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
plan_rc = sys.argv[5]
print(f"== gpu_check summary ({total} s in all)")
path = os.path.join(out, "benchmark.json")
if not os.path.exists(path):
  print(f"benchmark: no JSON (rc {bench_rc}); see benchmark.log")
else:
  d = json.load(open(path))
  print("machine:", d["machine"])
  print("suite seconds:", d.get("seconds"), f"(rc {bench_rc})")
  f = lambda v, p=3: (f"{v:.{p}g}" if isinstance(v, float) else str(v))
  for r in d["suites"].get("model", []):
    if r.get("dtype") == "FAILED":
      print(f"model {r['model']} {r['size']}: FAILED {r.get('peak_source')}")
      continue
    mfu = f"{100 * r['mfu']:.1f}%" if isinstance(r["mfu"], float) else "-"
    print(f"model {r['model']:12s} {r['size']:18s} {r['dtype']:8s} attn={r['attention'] or '-':6s} "
          f"B{r['batch']} T{r['seq_len']} compile {f(r['compile_s'])} s  "
          f"step {f(r['step_ms'])} ms  {r['tokens_per_sec']:,.0f} tok/s  MFU {mfu}")
  for r in d["suites"].get("attention", []):
    if r["impl"] in ("ours", "jax_dpa_cudnn", "torch_sdpa"):
      print(f"attention {r['level']:5s} {r['shape']:24s} causal={r['causal']!s:5s} {r['impl']:13s} "
            f"{f(r['median_ms'])} ms  time/torch_sdpa {f(r['ratio'])}  "
            f"diff {f(r['max_abs_diff'], 2)} {r['parity']}")
  best = {}
  for r in d["suites"].get("rnn", []):
    key = (r["cell"], r["shape"])
    if r["impl"] == "FAILED":
      print(f"rnn {r['cell']} {r['shape']}: FAILED {r.get('max_abs_diff')}")
    elif r["impl"] == "torch":
      best.setdefault(key, {})["torch"] = r["median_ms"]
    elif r["impl"] not in ("flax_nnx", "ours_cho") and isinstance(r.get("vs_torch"), float):
      b = best.setdefault(key, {})
      if "ours" not in b or r["vs_torch"] < b["ours"][1]:
        b["ours"] = (r["impl"], r["vs_torch"], r["median_ms"])
  for (cell, shape), b in best.items():
    if "ours" in b:
      print(f"rnn {cell} {shape}: cuDNN {f(b.get('torch', float('nan')))} ms; best ours "
            f"{b['ours'][0]} {f(b['ours'][2])} ms = {f(b['ours'][1])}x cuDNN")
# The plan beside the measurement: Transformer-base at the benchmark's shape.
measured = None
if os.path.exists(path):
  measured = next((r for r in json.load(open(path))["suites"].get("model", [])
                   if r.get("model") == "transformer" and r.get("size") == "base"
                   and isinstance(r.get("step_ms"), float)), None)
for name in ("plan_bench_shape", "plan_vaswani2017"):
  pp = os.path.join(out, name + ".json")
  if not os.path.exists(pp):
    print(f"{name}: no plan (rc {plan_rc}); see plan.log")
    continue
  p = json.load(open(pp))
  b = p["bytes_per_device"]
  xla = p.get("flops_per_step_xla")
  line = (f"{name}: params {p['params'] / 1e6:.1f}M  FLOPs/step {p['flops_per_step']:.3g} "
          f"(XLA {xla:.3g})  memory {b['total'] / 1e9:.1f} GB/device (XLA on this GPU) "
          f"fits {p['fits']}  est. step {1e3 * p['step_seconds']:.1f} ms at "
          f"{100 * p['mfu']:.0f}% MFU  run {p['run_hours']:.2f} h") if xla else name
  print(line)
  if name == "plan_bench_shape" and measured:
    implied = p["step_seconds"] * p["mfu"] / (measured["step_ms"] / 1e3)
    print(f"  measured Transformer-base step {measured['step_ms']:.1f} ms "
          f"(benchmark MFU {100 * measured['mfu']:.1f}%): the plan's FLOPs imply MFU "
          f"{100 * implied:.1f}%")
log = os.path.join(out, "gpu_tests.log")
tail = open(log).read().strip().splitlines()[-1:] if os.path.exists(log) else ["no log"]
print(f"GPU tests (rc {tests_rc}):", tail[0])
PY
