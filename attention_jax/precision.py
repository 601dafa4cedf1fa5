"""Mixed precision: the rule, and the check that a compiled step obeys it.

The rule (``train.compute_dtype``): a model computes in the dtype of the parameters it is
merged with; ``step.merge_for_compute`` casts the float32 parameters inside the
differentiated function, so every matrix product takes compute-dtype operands while
softmax, layer-norm statistics, the losses, parameters, gradients and optimizer state stay
float32. :func:`dot_operand_dtypes` reads the operand dtypes of every matrix product in a
lowered (StableHLO) or dumped (HLO) module's text.
Documented in docs/scale.md#mixed-precision.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import sys

import jax
import jax.numpy as jnp

# StableHLO: %3 = stablehlo.dot_general %1, %2, ... : (tensor<4x8xbf16>, tensor<8x16xbf16>) -> ...
_MLIR_DOT = re.compile(r"stablehlo\.dot(?:_general)?\b[^\n]*?:\s*\(([^)]*)\)\s*->")
_MLIR_TYPE = re.compile(r"tensor<(?:[^<>]*x)?([a-z]+[0-9]*)>")
# A dot whose algorithm rounds its operands (jax.nn.dot_product_attention's
# backward: f32 scores x bf16 keys at BF16_BF16_F32) computes at that precision.
_MLIR_ALGORITHM = re.compile(
  r"lhs_precision_type = ([a-z]+[0-9]*), rhs_precision_type = ([a-z]+[0-9]*)"
)
_HLO_ALGORITHM = re.compile(r"algorithm=dot_([a-z]+[0-9]*)_([a-z]+[0-9]*)_")
# HLO: %dot.5 = bf16[16,64]{1,0} dot(bf16[16,32]{1,0} %a, bf16[32,64]{1,0} %b), ...
#  or (older printers) dot(%a, %b) with the operands' types at their definitions.
_HLO_DEF = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*([a-z]+[0-9]*)\[", re.M)
_HLO_DOT = re.compile(r"=\s*[a-z]+[0-9]*\[[^\]]*\][^ ]*\s+dot\(([^)]*)\)")
_HLO_OPERAND = re.compile(r"(?:([a-z]+[0-9]*)\[[^\]]*\](?:\{[^}]*\})?\s+)?%([\w.\-]+)")

DTYPE_NAMES = {"bf16": "bfloat16", "f16": "float16", "f32": "float32", "f64": "float64"}


def dot_operand_dtypes(text: str) -> list[tuple[str, str]]:
  """The (lhs, rhs) operand dtypes of every dot in ``text``, as HLO names
  (``bf16``, ``f32``, ...). Reads StableHLO or HLO text. A dot with an
  explicit algorithm counts at the precision the algorithm rounds its
  operands to."""
  if "stablehlo." in text:
    out = []
    for m in _MLIR_DOT.finditer(text):
      algorithm = _MLIR_ALGORITHM.search(m.group(0))
      types = list(algorithm.groups()) if algorithm else _MLIR_TYPE.findall(m.group(1))
      if len(types) == 2:
        out.append((types[0], types[1]))
    return out
  defined = {name: dt for name, dt in _HLO_DEF.findall(text)}
  out = []
  for m in _HLO_DOT.finditer(text):
    line_end = text.find("\n", m.end())
    algorithm = _HLO_ALGORITHM.search(text[m.end() : None if line_end < 0 else line_end])
    if algorithm:
      out.append(algorithm.groups())
      continue
    operands = _HLO_OPERAND.findall(m.group(1))[:2]
    dts = [dt or defined.get(name, "?") for dt, name in operands]
    if len(dts) == 2:
      out.append((dts[0], dts[1]))
  return out


def count_dots(text: str) -> collections.Counter:
  """``Counter`` of ``"lhs x rhs"`` operand dtypes over every dot in ``text``."""
  return collections.Counter(f"{a} x {b}" for a, b in dot_operand_dtypes(text))


def wide_dots(text: str, dtype) -> list[tuple[str, str]]:
  """The dots that do not take two ``dtype`` operands (for bf16 compute: the
  products that still run in float32)."""
  want = {v: k for k, v in DTYPE_NAMES.items()}[jnp.dtype(dtype).name]
  return [d for d in dot_operand_dtypes(text) if d != (want, want)]


def step_dtype(text: str) -> str:
  """The dtype a step's matrix products compute in: ``bfloat16``/``float32``/…
  when every dot takes that dtype, else ``mixed``."""
  kinds = {a if a == b else "mixed" for a, b in dot_operand_dtypes(text)}
  if len(kinds) == 1:
    return DTYPE_NAMES.get(kinds.pop(), "mixed")
  return "mixed" if kinds else "none"


def lowered_text(fn, *args) -> str:
  """StableHLO of ``jax.jit(fn)`` lowered on ``args`` (nothing is compiled)."""
  return jax.jit(fn).lower(*args).as_text()


def main(argv: list[str]) -> int:
  """``python -m attention_jax.precision DIR [PATTERN]``: the dots of every
  ``*PATTERN*.before_optimizations.txt`` in an ``--xla_dump_to`` directory."""
  if len(argv) < 2:
    print("usage: python -m attention_jax.precision DUMP_DIR [PATTERN]", file=sys.stderr)
    return 2
  pattern = argv[2] if len(argv) > 2 else "jit_train_step"
  paths = sorted(glob.glob(os.path.join(argv[1], f"*{pattern}*.before_optimizations.txt")))
  if not paths:
    print(f"error: no *{pattern}*.before_optimizations.txt in {argv[1]}", file=sys.stderr)
    return 2
  for path in paths:
    with open(path, encoding="utf-8") as f:
      counts = count_dots(f.read())
    total = sum(counts.values())
    parts = ", ".join(f"{n} {k}" for k, n in counts.most_common())
    print(f"{os.path.basename(path)}: {total} dots: {parts}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
