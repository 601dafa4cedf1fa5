"""Paired, interleaved timing for noisy machines.

Every variant runs in the same process, round-robin with the starting variant
rotated each round, so drift hits all alike. The reported ratio is the median
over rounds of the per-round ratio ``t_variant / t_reference`` (a paired
statistic, steadier than a ratio of medians). Each callable must synchronise
(``jax.block_until_ready``; ``torch.cuda.synchronize`` on GPU) before returning.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import jax

from attention_jax import host_memory

# The clock ``bench`` reads. ``experiments.benchmark --clock=process`` switches
# to process CPU time: on a shared, oversubscribed machine, with every
# implementation single-threaded, CPU time counts the work done and not the
# waiting for a core (wall time there can be inflated 10-20x and erratic).
default_clock: Callable[[], float] = time.perf_counter


def bench(
  variants: dict[str, Callable[[], object]],
  reference: str,
  *,
  rounds: int = 11,
  iters: int = 3,
  warmup: int = 2,
  budget_s: float | None = None,
  clock: Callable[[], float] | None = None,
) -> dict[str, dict]:
  """Times zero-argument callables. Returns ``{name: {median_ms, ratio, …,
  times_ms}}`` (``times_ms``: the per-round times, for other paired ratios)."""
  clock = clock or default_clock
  names = list(variants)
  if reference not in names:
    raise ValueError(f"reference {reference!r} not among {names}")
  for n in names:
    for _ in range(warmup):
      variants[n]()
  times: dict[str, list[float]] = {n: [] for n in names}
  start = time.perf_counter()
  for r in range(rounds):
    for n in names[r % len(names) :] + names[: r % len(names)]:
      t0 = clock()
      for _ in range(iters):
        variants[n]()
      times[n].append((clock() - t0) * 1e3 / iters)
    if budget_s is not None and time.perf_counter() - start > budget_s:
      break
  ref = times[reference]
  out = {}
  for n in names:
    ratios = sorted(t / b for t, b in zip(times[n], ref, strict=True))
    out[n] = {
      "median_ms": statistics.median(times[n]),
      "min_ms": min(times[n]),
      "ratio": statistics.median(ratios),
      "ratio_min": ratios[0],
      "ratio_max": ratios[-1],
      "rounds": len(times[n]),
      "times_ms": list(times[n]),
    }
  return out


def paired_ratio(a: list[float], b: list[float]) -> float:
  """The median over rounds of the per-round ratio ``a / b``."""
  return statistics.median(x / y for x, y in zip(a, b, strict=True))


def machine() -> str:
  """A one-line description of where the numbers came from."""
  dev = jax.devices()[0]
  kind = getattr(dev, "device_kind", dev.platform)
  if dev.platform == "cpu":
    try:
      with open("/proc/cpuinfo") as f:
        kind = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
      kind = platform.processor() or "cpu"
  return (
    f"{kind} ({jax.default_backend()}), {os.cpu_count()} CPU cores, "
    f"jax {jax.__version__}, Python {platform.python_version()}, malloc: {host_memory.state}"
  )


def format_table(rows: list[dict], columns: list[str]) -> str:
  """A Markdown table of ``rows`` restricted to ``columns``."""

  def fmt(v):
    if isinstance(v, float):
      return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)

  lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
  for r in rows:
    lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
  return "\n".join(lines)
