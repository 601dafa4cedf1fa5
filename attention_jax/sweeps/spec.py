"""A sweep's definition: ``sweep(arg)`` beside ``get_config`` in a config file (with optional
``ANALYSES``, ``REPORT``, ``SLURM``, ``SEEDS``: docs/sweeps.md), its points, their slugs,
overrides and directories. A config file is Python: run configs you trust."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import json
import os
import re
from typing import Any

from attention_jax import config as config_lib
from attention_jax import validation
from attention_jax.errors import ConfigError, SweepError
from attention_jax.sweeps.point import Point, Sweep

# Files the analyses write in a point's directory (its other files: .point).
BY_LENGTH_CSV = os.path.join("eval", "by_length.csv")  # analysis by_length
GRADIENTS_CSV = os.path.join("gradients", "gradients.csv")  # analysis gradients
DECAY_CSV = os.path.join("gradients", "decay.csv")
PROBE_CSV = os.path.join("probe", "initial_state.csv")  # analysis probe

SLUG_MAX = 120  # characters in a point's directory name
VALUE_MAX = 32  # characters of one value kept before hashing
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


def _digest(text: str, n: int = 8) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _value_text(value: Any) -> str:
  return repr(value).replace("e+", "e") if isinstance(value, float) else str(value)  # 1e30


def _safe_value(value: Any) -> str:
  """``value`` with unsafe characters replaced; hashed when changed or long (so that ``a/b``
  and ``a-b`` land in different directories)."""
  text = _value_text(value)
  safe = _SAFE.sub("-", text).strip(".")
  if safe != text or len(safe) > VALUE_MAX:
    safe = f"{safe[:VALUE_MAX]}-{_digest(text)}"
  return safe or _digest(text)


def _short_keys(keys) -> dict[str, str]:
  """Last component of each dotted key, unless two keys share it."""
  leaves = [k.rsplit(".", 1)[-1] for k in keys]
  return {k: (leaf if leaves.count(leaf) == 1 else k) for k, leaf in zip(keys, leaves, strict=True)}


def slug(overrides: dict[str, Any], short: dict[str, str] | None = None) -> str:
  """A directory name for a point (``hidden_size=64_task=reverse``): letters, digits and
  ``._=-`` only, never ``.``/``..``, at most ``SLUG_MAX`` characters (a long slug is cut and
  ends with a hash of the whole override set)."""
  if not overrides:
    return "base"
  short = short or _short_keys(list(overrides))
  text = "_".join(
    f"{_SAFE.sub('-', short.get(k, k))}={_safe_value(overrides[k])}" for k in sorted(overrides)
  )
  if len(text) > SLUG_MAX:
    full = json.dumps({k: _value_text(v) for k, v in overrides.items()}, sort_keys=True)
    text = f"{text[: SLUG_MAX - 9]}-{_digest(full)}"
  text = text.lstrip(".-") or "p-" + _digest(text)
  assert _SAFE.search(text) is None and text not in (".", ".."), text
  return text


def point_dir(root: str, point_slug: str) -> str:
  """``root/point_slug``, refusing anything that would land outside ``root``."""
  root = os.path.realpath(root)
  path = os.path.realpath(os.path.join(root, point_slug))
  if os.path.dirname(path) != root:
    raise SweepError(f"point directory {point_slug!r} escapes {root}")
  return path


def split_config_spec(spec: str) -> tuple[str, str | None]:
  """``configs/x.py:ARG`` -> (``configs/x.py``, ``ARG``)."""
  path, sep, arg = spec.partition(".py:")
  return (path + ".py", arg) if sep else (spec, None)


def _one_line(e: Exception) -> str:
  return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _load_module(path: str):
  if not os.path.exists(path):
    raise SweepError(f"config file '{path}' not found")
  spec = importlib.util.spec_from_file_location(
    "sweep_config_" + _digest(os.path.abspath(path)), path
  )
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - one line naming the file
    raise SweepError(f"{path}: cannot load config: {_one_line(e)}") from e
  return module


def _call_with_arg(fn, arg):
  return fn(arg) if inspect.signature(fn).parameters else fn()


def apply_overrides(config, overrides: dict[str, Any]):
  """Sets dotted keys on a copy of ``config`` (unknown keys raise)."""
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    if msg := config_lib.unknown_key_message(key):
      raise config_lib.ConfigError(msg)
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    if isinstance(node[leaf], float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    node[leaf] = value
  return config


def sweep_seeds(declared, n: int | None, config_seed: int, path: str) -> tuple[int, ...]:
  """The seeds of a sweep: ``SEEDS`` (``declared``; default the config's own ``seed``), or
  its first ``n`` (``--seeds N``) continued past its largest."""
  declared = (config_seed,) if declared is None else declared
  if isinstance(declared, int) or not all(
    isinstance(s, int) and not isinstance(s, bool) for s in declared
  ):
    raise SweepError(f"{path}: SEEDS must be a tuple of ints, got {declared!r}")
  declared = tuple(dict.fromkeys(declared))
  if not declared:
    raise SweepError(f"{path}: SEEDS is empty")
  if n is None:
    return declared
  if n < 1:
    raise SweepError(f"--seeds must be >= 1, got {n}")
  return (declared + tuple(range(max(declared) + 1, max(declared) + 1 + n)))[:n]


def expand_seeds(points: list[Point], seeds: tuple[int, ...], config_seed: int) -> list[Point]:
  """One seed-run per (point, seed): ``<slug>_seed=<s>`` with the override ``seed``; one seed
  keeps the point's directory (and, the config's own, its overrides: existing sweeps)."""
  out = []
  for p in points:
    for s in seeds:
      run = p.slug if len(seeds) == 1 else f"{p.slug}_seed={s}"
      own = seeds == (config_seed,)
      overrides = p.overrides if own else {**p.overrides, "seed": s}
      workdir = point_dir(os.path.dirname(p.workdir), run)
      out.append(Point(overrides, run, workdir, p.steps, group=p.slug, seed=None if own else s))
  return out


def _from_module(module, constant: str, function: str, arg):
  """``module.function(arg)`` if defined, else ``module.CONSTANT`` (or None), and its name."""
  if callable(fn := getattr(module, function, None)):
    return _call_with_arg(fn, arg), f"{function}({arg!r})"
  return getattr(module, constant, None), constant


def _spec_dict(module, constant: str, function: str, arg, path: str) -> dict:
  value, name = _from_module(module, constant, function, arg)
  if value is not None and not isinstance(value, dict):
    raise SweepError(f"{path}: {name} must be a dict, got {type(value).__name__}")
  return dict(value or {})


def load_sweep(spec: str, workdir: str, seeds: int | None = None) -> Sweep:
  """Reads ``configs/NAME.py[:ARG]`` and validates every point's config; ``seeds``: ``--seeds
  N``. Raises SweepError (one line naming the file, point and key) before any work starts."""
  path, arg = split_config_spec(spec)
  module = _load_module(path)
  for name in ("get_config", "sweep"):
    if not callable(getattr(module, name, None)):
      raise SweepError(f"{path}: defines no {name}(arg) function")
  try:
    base = _call_with_arg(module.get_config, arg)
    overrides = [dict(o) for o in _call_with_arg(module.sweep, arg)]
  except ValueError as e:  # the config's own one-line error names the file
    raise SweepError(" ".join(str(e).split())) from e
  except Exception as e:  # noqa: BLE001 - the spec's own code failed: one line naming the file
    raise SweepError(f"{path}: {_one_line(e)}") from e
  if not overrides:
    raise SweepError(f"{path}: sweep({arg!r}) yields no points")
  all_keys = sorted({k for o in overrides for k in o})
  short = _short_keys(all_keys)
  points, seen = [], {}
  for i, o in enumerate(overrides):
    try:
      config = validation.prepare(apply_overrides(base, o), o)
    except (ConfigError, KeyError, TypeError, ValueError) as e:
      raise SweepError(f"{path}: point {i} {o}: {' '.join(str(e).split())}") from e
    s = slug(o, short)
    if s in seen:
      raise SweepError(f"{path}: points {seen[s]} and {i} are the same: {o}")
    seen[s] = i
    points.append(Point(o, s, point_dir(workdir, s), int(config.train.steps)))
  config_seed = int(base.get("seed", 0))
  declared, _ = _from_module(module, "SEEDS", "seeds", arg)  # seeds(arg): e.g. one for tiny
  run_seeds = sweep_seeds(declared, seeds, config_seed, path)
  if "seed" in all_keys and run_seeds != (config_seed,):
    raise SweepError(f"{path}: sweep() varies 'seed' itself; drop SEEDS / --seeds")
  report = _spec_dict(module, "REPORT", "report", arg, path)
  title = report.get("title") or os.path.splitext(os.path.basename(path))[0]
  points, analyses = expand_seeds(points, run_seeds, config_seed), getattr(module, "ANALYSES", ())
  sweep = Sweep(os.path.abspath(path), arg, points, tuple(analyses), report, title, seeds=run_seeds)
  sweep.resources = _spec_dict(module, "SLURM", "slurm", arg, path)
  return sweep
