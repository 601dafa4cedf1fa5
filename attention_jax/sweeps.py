"""Sweeps: one workdir per point, failures isolated, results aggregated.

A config file defines its sweep beside ``get_config`` (big_vision style)::

    def get_config(arg=None): ...
    def sweep(arg=None):            # yields override dicts, dotted keys
      for h in (32, 64):
        yield {"model.hidden_size": h}
    ANALYSES = ("by_length",)      # optional: per-point analyses after training
    REPORT = {...}                 # optional: how to plot and summarize

``run_sweep`` runs every point as ``python -m experiments.run`` in its own
subprocess and workdir ``DIR/<slug>/`` (the slug is built from the overrides,
so a re-run finds the same directory), then any analyses in a second
subprocess (``python -m experiments.analyze_point``). A point that finished
(``sweep_status.json`` says ``done``) is skipped on re-run; a failed one is
recorded with its exit code and the last lines of its log, and the rest go on.
At the end ``DIR/summary.csv``, ``DIR/summary.md``, ``DIR/plots/*.png`` and
``DIR/report.md`` are (re)written from every point's workdir.

Run configs you trust: a config file is Python and executes code.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import hashlib
import importlib.util
import inspect
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STATUS_FILE = "sweep_status.json"
POINT_FILE = "sweep_point.json"
LOG_FILE = "sweep.log"
BY_LENGTH_CSV = os.path.join("eval", "by_length.csv")
SLUG_MAX = 120          # characters in a point's directory name
VALUE_MAX = 32          # characters of one value kept before hashing
_SAFE = re.compile(r"[^A-Za-z0-9._=-]")


class SweepError(ValueError):
  """The sweep definition is wrong. The message is one line."""


# --------------------------------------------------------------------------
# Slugs


def _digest(text: str, n: int = 8) -> str:
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _value_text(value: Any) -> str:
  if isinstance(value, float):
    return repr(value).replace("e+", "e")   # 1e+30 -> 1e30
  return str(value)


def _safe_value(value: Any) -> str:
  """``value`` with unsafe characters replaced; hashed when changed or long.

  The hash of the original text keeps two values that sanitize alike
  (``a/b`` and ``a-b``) in different directories.
  """
  text = _value_text(value)
  safe = _SAFE.sub("-", text).strip(".")
  if safe != text or len(safe) > VALUE_MAX:
    safe = f"{safe[:VALUE_MAX]}-{_digest(text)}"
  return safe or _digest(text)


def _short_keys(keys: Iterable[str]) -> dict[str, str]:
  """Last component of each dotted key, unless two keys share it."""
  keys = list(keys)
  leaves = [k.rsplit(".", 1)[-1] for k in keys]
  return {k: (leaf if leaves.count(leaf) == 1 else k)
          for k, leaf in zip(keys, leaves)}


def slug(overrides: dict[str, Any], short: dict[str, str] | None = None) -> str:
  """A directory name for a point: letters, digits and ``._=-`` only.

  ``model.hidden_size=64, data.task=reverse`` -> ``hidden_size=64_task=reverse``.
  Never ``.``/``..``, never a path separator, at most ``SLUG_MAX`` characters
  (a long slug is cut and ends with a hash of the whole override set).
  """
  if not overrides:
    return "base"
  short = short or _short_keys(overrides)
  parts = []
  for key in sorted(overrides):
    name = _SAFE.sub("-", short.get(key, key))
    parts.append(f"{name}={_safe_value(overrides[key])}")
  text = "_".join(parts)
  if len(text) > SLUG_MAX:
    full = json.dumps({k: _value_text(v) for k, v in overrides.items()},
                      sort_keys=True)
    text = f"{text[:SLUG_MAX - 9]}-{_digest(full)}"
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


# --------------------------------------------------------------------------
# The sweep definition


@dataclasses.dataclass
class Point:
  overrides: dict[str, Any]
  slug: str
  workdir: str


@dataclasses.dataclass
class Sweep:
  config_path: str            # absolute path of the config file
  arg: str | None
  points: list[Point]
  analyses: tuple[str, ...]
  report: dict[str, Any]
  title: str


def split_config_spec(spec: str) -> tuple[str, str | None]:
  """``configs/x.py:ARG`` -> (``configs/x.py``, ``ARG``)."""
  path, sep, arg = spec.partition(".py:")
  if sep:
    return path + ".py", arg
  return spec, None


def _load_module(path: str):
  if not os.path.exists(path):
    raise SweepError(f"config file '{path}' not found")
  name = "sweep_config_" + _digest(os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  except Exception as e:  # noqa: BLE001 - one line naming the file
    raise SweepError(f"{path}: cannot load config: {type(e).__name__}: "
                     f"{' '.join(str(e).split())}") from e
  return module


def _call_with_arg(fn: Callable, arg):
  return fn(arg) if inspect.signature(fn).parameters else fn()


def apply_overrides(config, overrides: dict[str, Any]):
  """Sets dotted keys on a copy of ``config`` (unknown keys raise)."""
  from attention_jax import config as config_lib
  config = config.copy_and_resolve_references()
  for key, value in overrides.items():
    msg = config_lib.unknown_key_message(key)
    if msg:
      raise config_lib.ConfigError(msg)
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    old = node[leaf]
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
      value = float(value)
    node[leaf] = value
  return config


def load_sweep(spec: str, workdir: str) -> Sweep:
  """Reads ``configs/NAME.py[:ARG]``, validates every point's config.

  Raises :class:`SweepError` (one line naming the file, point and key) before
  any work starts.
  """
  from attention_jax import config as config_lib
  path, arg = split_config_spec(spec)
  module = _load_module(path)
  for name in ("get_config", "sweep"):
    if not callable(getattr(module, name, None)):
      raise SweepError(f"{path}: defines no {name}(arg) function")
  try:
    base = _call_with_arg(module.get_config, arg)
    overrides = [dict(o) for o in _call_with_arg(module.sweep, arg)]
  except Exception as e:  # noqa: BLE001
    raise SweepError(f"{path}: {type(e).__name__}: {' '.join(str(e).split())}") from e
  if not overrides:
    raise SweepError(f"{path}: sweep({arg!r}) yields no points")
  all_keys = sorted({k for o in overrides for k in o})
  short = _short_keys(all_keys)
  points, seen = [], {}
  for i, o in enumerate(overrides):
    try:
      config_lib.validate(config_lib.resolve(apply_overrides(base, o), o))
    except (config_lib.ConfigError, KeyError, TypeError, ValueError) as e:
      raise SweepError(f"{path}: point {i} {o}: {' '.join(str(e).split())}") from e
    s = slug(o, short)
    if s in seen:
      raise SweepError(f"{path}: points {seen[s]} and {i} are the same: {o}")
    seen[s] = i
    points.append(Point(o, s, point_dir(workdir, s)))
  analyses = tuple(getattr(module, "ANALYSES", ()))
  report = dict(getattr(module, "REPORT", {}) or {})
  if callable(getattr(module, "report", None)):
    report = dict(_call_with_arg(module.report, arg))
  title = report.get("title") or os.path.splitext(os.path.basename(path))[0]
  return Sweep(os.path.abspath(path), arg, points, analyses, report, title)


# --------------------------------------------------------------------------
# Running points


def _cli_value(value: Any) -> str:
  return repr(value) if isinstance(value, float) else str(value)


def train_command(sweep: Sweep, point: Point) -> list[str]:
  spec = sweep.config_path + (f":{sweep.arg}" if sweep.arg is not None else "")
  cmd = [sys.executable, "-m", "experiments.run", f"--config={spec}",
         f"--workdir={point.workdir}"]
  cmd += [f"--config.{k}={_cli_value(v)}" for k, v in sorted(point.overrides.items())]
  return cmd


def analysis_command(sweep: Sweep, point: Point) -> list[str] | None:
  if not sweep.analyses:
    return None
  return [sys.executable, "-m", "experiments.analyze_point",
          f"--workdir={point.workdir}", f"--analyses={','.join(sweep.analyses)}"]


def gpu_count() -> int:
  """GPUs visible to subprocesses (``nvidia-smi -L``), without importing jax."""
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None and visible.strip() in ("", "-1"):
    return 0
  if shutil.which("nvidia-smi") is None:
    return 0
  try:
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                         timeout=30).stdout
  except (OSError, subprocess.SubprocessError):
    return 0
  n = sum(1 for line in out.splitlines() if line.startswith("GPU "))
  if visible:
    n = min(n, len([v for v in visible.split(",") if v.strip()]))
  return n


def point_env(jobs: int, device: int | None, gpus: int) -> dict[str, str]:
  """The environment of one point's subprocess.

  GPU: the point sees one GPU (``CUDA_VISIBLE_DEVICES``) and does not
  preallocate 75% of its memory. CPU: each of the ``jobs`` parallel points
  gets ``cores // jobs`` threads, so the points share the cores instead of
  each spawning a pool the size of the machine.
  """
  env = dict(os.environ)
  env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"]
                                   if env.get("PYTHONPATH") else "")
  env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
  if gpus and device is not None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else None
    env["CUDA_VISIBLE_DEVICES"] = ids[device] if ids else str(device)
  elif jobs > 1:
    threads = max(1, (os.cpu_count() or 1) // jobs)
    flags = env.get("XLA_FLAGS", "")
    extra = (f"--xla_cpu_multi_thread_eigen=false "
             f"intra_op_parallelism_threads={threads}")
    env["XLA_FLAGS"] = f"{flags} {extra}".strip()
    env["OMP_NUM_THREADS"] = str(threads)
  return env


def read_status(workdir: str) -> dict | None:
  try:
    with open(os.path.join(workdir, STATUS_FILE), encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _tail(path: str, n: int = 20) -> list[str]:
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return [line.rstrip("\n") for line in f.readlines()[-n:]]
  except OSError:
    return []


_CHILDREN: set = set()          # running point subprocesses
_CHILDREN_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _stop_children() -> None:
  """Terminates the running points (they resume from their checkpoints)."""
  _STOPPING.set()
  with _CHILDREN_LOCK:
    procs = list(_CHILDREN)
  for proc in procs:
    proc.terminate()
  for proc in procs:
    try:
      proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
      proc.kill()


def run_point(sweep: Sweep, point: Point, env: dict[str, str]) -> dict:
  """Trains and analyzes one point in subprocesses; returns its status."""
  os.makedirs(point.workdir, exist_ok=True)
  _write_json(os.path.join(point.workdir, POINT_FILE),
              {"overrides": point.overrides, "config": sweep.config_path,
               "arg": sweep.arg, "slug": point.slug})
  log_path = os.path.join(point.workdir, LOG_FILE)
  t0 = time.time()
  status = {"status": "done", "returncode": 0, "overrides": point.overrides}
  with open(log_path, "a", encoding="utf-8") as log:
    for cmd in (train_command(sweep, point), analysis_command(sweep, point)):
      if cmd is None:
        continue
      if _STOPPING.is_set():
        return {"status": "interrupted"}
      log.write(f"$ {' '.join(cmd)}\n")
      log.flush()
      proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
      with _CHILDREN_LOCK:
        _CHILDREN.add(proc)
      try:
        rc = proc.wait()
      finally:
        with _CHILDREN_LOCK:
          _CHILDREN.discard(proc)
      if _STOPPING.is_set():
        return {"status": "interrupted"}
      if rc != 0:
        status.update(status="failed", returncode=rc, command=" ".join(cmd))
        break
  status["seconds"] = round(time.time() - t0, 1)
  if status["status"] == "failed":
    status["log_tail"] = _tail(log_path)
  _write_json(os.path.join(point.workdir, STATUS_FILE), status)
  return status


def _hms(seconds: float) -> str:
  s = int(round(max(seconds, 0)))
  return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def run_sweep(spec: str, workdir: str, jobs: int = 1,
              print_fn: Callable[[str], None] = print,
              reanalyze: bool = False, report_only: bool = False) -> list[dict]:
  """Runs every unfinished point, then writes the summary, plots and report.

  ``reanalyze``: finished points run again too — training finds its final
  checkpoint and returns at once, the analyses run anew (after they changed).
  ``report_only``: run nothing; write the summary and report of the points
  that have finished so far (the others appear as ``not run``).
  Returns one status dict per point (``done``, ``failed``, ``skipped`` or
  ``not run``).
  """
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  sweep = load_sweep(spec, workdir)
  _write_json(os.path.join(workdir, "sweep.json"),
              {"config": sweep.config_path, "arg": sweep.arg,
               "points": [{"slug": p.slug, "overrides": p.overrides}
                          for p in sweep.points]})
  if report_only:
    statuses = [dict(read_status(p.workdir) or {"status": "not run"}, slug=p.slug)
                for p in sweep.points]
    write_outputs(sweep, workdir, statuses)
    n = sum(s["status"] == "done" for s in statuses)
    print_fn(f"wrote the summary and report of {n} finished of "
             f"{len(statuses)} points in {workdir}")
    return statuses
  gpus = gpu_count()
  slots = min(jobs, gpus) if gpus else jobs
  slots = max(1, slots)
  todo, results = [], {}
  for p in sweep.points:
    st = read_status(p.workdir)
    if st and st.get("status") == "done" and not reanalyze:
      results[p.slug] = dict(st, status="skipped")
    else:
      todo.append(p)
  print_fn(f"sweep {sweep.title}: {len(sweep.points)} points, "
           f"{len(sweep.points) - len(todo)} already finished, {len(todo)} to run, "
           f"{slots} at a time on {'%d GPU(s)' % gpus if gpus else 'CPU'}")
  devices: queue.Queue = queue.Queue()
  for i in range(slots):
    devices.put(i)

  def work(point: Point) -> dict:
    if _STOPPING.is_set():   # queued when the sweep was interrupted
      return {"status": "interrupted"}
    device = devices.get()
    try:
      return run_point(sweep, point, point_env(slots, device, gpus))
    finally:
      devices.put(device)

  t0, done, durations = time.time(), 0, []
  lock = threading.Lock()
  _STOPPING.clear()
  previous = None
  if threading.current_thread() is threading.main_thread():
    def on_term(signum, frame):
      raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, on_term)
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=slots)
  try:
    futures = {pool.submit(work, p): p for p in todo}
    for fut in concurrent.futures.as_completed(futures):
      p = futures[fut]
      try:
        st = fut.result()
      except Exception as e:  # noqa: BLE001 - the runner itself failed
        st = {"status": "failed", "returncode": None, "overrides": p.overrides,
              "log_tail": [f"{type(e).__name__}: {e}"]}
      with lock:
        results[p.slug] = st
        done += 1
        elapsed = time.time() - t0
        durations.append(st.get("seconds") or elapsed)
        # points still to start or running, each taking the mean duration so far,
        # ``slots`` at a time
        eta = sum(durations) / len(durations) * math.ceil((len(todo) - done) / slots)
        extra = "" if st["status"] == "done" else (
            f" (exit {st.get('returncode')}; see {os.path.join(p.workdir, LOG_FILE)})")
        print_fn(f"[{done}/{len(todo)}] {p.slug}: {st['status']}{extra} in "
                 f"{st.get('seconds', 0):.0f}s; elapsed {_hms(elapsed)}, "
                 f"ETA {_hms(eta)}")
  except KeyboardInterrupt:
    print_fn("interrupted: stopping the running points (a re-run resumes them)")
    _stop_children()
    pool.shutdown(wait=True, cancel_futures=True)
    raise
  finally:
    pool.shutdown(wait=True)
    if previous is not None:
      signal.signal(signal.SIGTERM, previous)
  statuses = [dict(results[p.slug], slug=p.slug) for p in sweep.points]
  write_outputs(sweep, workdir, statuses)
  failed = [s for s in statuses if s["status"] == "failed"]
  print_fn(f"wrote {os.path.join(workdir, 'summary.csv')}, summary.md, "
           f"report.md and plots/; {len(failed)} point(s) failed")
  return statuses


# --------------------------------------------------------------------------
# Per-point analyses (run in the point's own subprocess)


def upgrade_config_json(workdir: str) -> bool:
  """Adds keys missing from an older ``config.json`` with their defaults.

  A workdir trained before a key was added to ``base_config`` fails
  validation when loaded back; the sweep's analyses fill such keys with their
  defaults (which reproduce the old behaviour) and keep the original as
  ``config.json.orig``. Returns True if the file changed.
  """
  from attention_jax import config as config_lib
  path = os.path.join(workdir, "config.json")
  with open(path, encoding="utf-8") as f:
    given = json.load(f)
  merged = config_lib.base_config().to_dict()

  def fill(dst, src):
    for k, v in src.items():
      if isinstance(v, dict) and isinstance(dst.get(k), dict):
        fill(dst[k], v)
      else:
        dst[k] = v
  fill(merged, given)
  if merged == given:
    return False
  if not os.path.exists(path + ".orig"):
    shutil.copyfile(path, path + ".orig")
  _write_json(path, merged)
  return True


def eval_by_length(workdir: str, max_length: int | None = None,
                   examples_per_length: int = 40) -> list[dict[str, Any]]:
  """Accuracy and BLEU of the trained model in ``workdir`` per source length.

  Sources of lengths 1..``max_length`` (default 2× the training limit, about
  ``examples_per_length`` of each) are drawn from the task's held-out
  ``test`` split and scored by ``attention_jax.evaluation.collect`` — the
  decoding (``eval.*``: greedy or beam) and metrics of
  ``experiments.evaluate``, BLEU/chrF against the raw references — with one
  bucket per length. Writes ``workdir/eval/by_length.csv``: ``length``
  (source length in ``length_unit``: symbols, characters for ``addition``,
  words for ``reorder``), ``examples``, ``token_accuracy`` (teacher-forced),
  ``sequence_accuracy`` (exact match of the decoded output), ``bleu``,
  ``chrf``, ``in_training_range``, ``length_unit``.
  """
  from attention_jax import data as data_lib
  from attention_jax import evaluation
  from attention_jax import metrics as metrics_lib

  upgrade_config_json(workdir)
  _, config, run = evaluation.load(workdir)
  lo, train_max = config.data.train_min_length, config.data.train_max_length
  max_length = max_length or 2 * train_max
  c = config.copy_and_resolve_references()
  c.data.eval_min_length = 1
  c.data.eval_max_length = max_length
  c.data.eval_examples = examples_per_length * max_length
  task = data_lib.build_task(c)
  records = evaluation.collect(run, run.state.params, c, "test", task=task)
  rows = []
  for r in metrics_lib.summarize_by_length(records, list(range(1, max_length + 1))):
    L = r["min_length"]
    if not r["count"] or L > max_length:
      continue
    rows.append({"length": L, "examples": r["count"],
                 "token_accuracy": r["token_accuracy"],
                 "sequence_accuracy": r["sequence_accuracy"],
                 "bleu": r.get("bleu"), "chrf": r.get("chrf"),
                 "in_training_range": int(lo <= L <= train_max),
                 "length_unit": task.length_unit})
  os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
  write_csv(os.path.join(workdir, BY_LENGTH_CSV), rows)
  return rows


GRADIENTS_CSV = os.path.join("gradients", "gradients.csv")
DECAY_CSV = os.path.join("gradients", "decay.csv")


def gradient_curves(workdir: str, examples: int = 64) -> dict[str, Any]:
  """‖∂L/∂h_t‖ of the point's own cell at initialization and after training.

  ``attention_jax.gradients.analyze_workdir`` (float64, readout included,
  fitted decay per step) → ``workdir/gradients/{gradients,decay}.csv`` and
  ``gradients.png``.
  """
  from attention_jax import gradients
  upgrade_config_json(workdir)
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    model = json.load(f)["model"]
  label = "attention" if model["pooling"] == "attention" else model["cell"]
  variant = (label, model["cell"], model["pooling"])
  return gradients.analyze_workdir(workdir, variants=[variant], examples=examples)


ANALYSES: dict[str, Callable[[str], Any]] = {
    "by_length": eval_by_length,
    "gradients": gradient_curves,
}


def analyze_point(workdir: str, names: Iterable[str]) -> None:
  for name in names:
    if name not in ANALYSES:
      raise SweepError(f"unknown analysis {name!r}; known: {', '.join(sorted(ANALYSES))}")
  for name in names:
    ANALYSES[name](workdir)


# --------------------------------------------------------------------------
# Summary, plots and report


def write_csv(path: str, rows: list[dict]) -> None:
  keys: list[str] = []
  for r in rows:
    keys += [k for k in r if k not in keys]
  tmp = path + ".tmp"
  with open(tmp, "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
  os.replace(tmp, path)


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


def _last_eval(workdir: str) -> dict[str, Any]:
  from attention_jax import writers
  try:
    rows = [r for r in writers.read_metrics(workdir) if r.get("split") == "eval"]
  except (OSError, ValueError):
    return {}
  return rows[-1] if rows else {}


def collect(sweep: Sweep, statuses: list[dict]
            ) -> tuple[list[dict], dict[str, dict[str, list]]]:
  """Summary rows (one per point) and each point's analysis tables.

  The second value maps an analysis (``by_length``, ``gradients``) to
  ``{slug: rows}``.
  """
  rows, tables = [], {"by_length": {}, "gradients": {}}
  metric_keys = sweep.report.get("metrics")
  swept = list(dict.fromkeys(k for p in sweep.points for k in p.overrides))
  for p, st in zip(sweep.points, statuses):
    row = {"point": p.slug, **{k: p.overrides.get(k) for k in swept},
           "status": "done" if st["status"] in ("done", "skipped") else st["status"],
           "returncode": st.get("returncode"), "seconds": st.get("seconds")}
    if row["status"] != "done":   # failed or not run: no results to report
      rows.append(row)
      continue
    last = _last_eval(p.workdir)
    if isinstance(last.get("baseline_loss"), (int, float)) and last["baseline_loss"] > 0:
      last["loss_ratio"] = last["loss"] / last["baseline_loss"]
    for k, v in last.items():
      if k == "split" or k.endswith("_signature") or (
          metric_keys and k not in metric_keys and k != "step"):
        continue
      row[k] = v
    bl_path = os.path.join(p.workdir, BY_LENGTH_CSV)
    if os.path.exists(bl_path):
      tables["by_length"][p.slug] = read_csv(bl_path)
    grad_path = os.path.join(p.workdir, GRADIENTS_CSV)
    if os.path.exists(grad_path):
      tables["gradients"][p.slug] = read_csv(grad_path)
    decay_path = os.path.join(p.workdir, DECAY_CSV)
    if os.path.exists(decay_path):
      tables.setdefault("decay", {})[p.slug] = read_csv(decay_path)
    rows.append(row)
  return rows, tables


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


def label_of(overrides: dict[str, Any], keys: Iterable[str]) -> str:
  return " ".join(f"{k.rsplit('.', 1)[-1]}={overrides[k]}" for k in keys
                  if k in overrides)


def write_outputs(sweep: Sweep, workdir: str, statuses: list[dict]) -> None:
  from attention_jax import sweep_plots
  rows, tables = collect(sweep, statuses)
  write_csv(os.path.join(workdir, "summary.csv"), rows)
  with open(os.path.join(workdir, "summary.md"), "w", encoding="utf-8") as f:
    f.write(f"# {sweep.title}: summary\n\n" + markdown_table(rows))
  plots_dir = os.path.join(workdir, "plots")
  os.makedirs(plots_dir, exist_ok=True)
  sections = sweep_plots.make_report_sections(sweep, rows, tables, plots_dir)
  failed = [(p, s) for p, s in zip(sweep.points, statuses) if s["status"] == "failed"]
  not_run = sum(s["status"] == "not run" for s in statuses)
  lines = [f"# {sweep.title}\n",
           f"Config `{os.path.relpath(sweep.config_path, REPO_ROOT)}`"
           + (f" with arg `{sweep.arg}`" if sweep.arg else "")
           + f"; {len(rows)} points, {len(failed)} failed"
           + (f", {not_run} not run (yet)" if not_run else "") + ".\n"]
  if sweep.report.get("description"):
    lines.append(sweep.report["description"].strip() + "\n")
  lines += sections
  lines.append("## All points\n\n" + markdown_table(rows))
  if failed:
    lines.append("## Failed points\n")
    for p, s in failed:
      tail = "\n".join(s.get("log_tail", [])[-10:])
      lines.append(f"### {p.slug}\n\nexit code {s.get('returncode')}; "
                   f"log `{os.path.join(p.workdir, LOG_FILE)}`:\n\n```\n{tail}\n```\n")
  with open(os.path.join(workdir, "report.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines))
