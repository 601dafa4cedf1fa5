"""Small table helpers of the sweep reports: CSV in and out, Markdown."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any

from attention_jax import fileio


def write_csv(path: str, rows: list[dict]) -> None:
  keys: list[str] = []
  for r in rows:
    keys += [k for k in r if k not in keys]
  with fileio.atomic_open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)


def read_csv(path: str) -> list[dict[str, Any]]:
  def conv(v):
    for t in (int, float):
      try:
        return t(v)
      except ValueError:
        pass
    return v

  with open(path, newline="", encoding="utf-8") as f:
    return [{k: conv(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return "" if v is None else str(v)


def markdown_table(rows: list[dict], keys: list[str] | None = None) -> str:
  if not rows:
    return "(no rows)\n"
  keys = keys or list(dict.fromkeys(k for r in rows for k in r))
  out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  for r in rows:
    out.append("| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |")
  return "\n".join(out) + "\n"


def interval_cell(value, lo, hi) -> str | None:
  """``mean [low, high]`` where there is an interval, else None."""
  if all(isinstance(v, float) for v in (value, lo, hi)):
    return f"{value:.4g} [{lo:.4g}, {hi:.4g}]"
  return None


def bands(lengths: Sequence[int], n: int = 3) -> list[tuple[int, int]]:
  """Up to ``n`` contiguous bands of ``lengths`` (sorted), as (first, last)."""
  lengths = sorted(lengths)
  k = max(1, -(-len(lengths) // n))
  return [
    (chunk[0], chunk[-1]) for chunk in (lengths[i : i + k] for i in range(0, len(lengths), k))
  ]
