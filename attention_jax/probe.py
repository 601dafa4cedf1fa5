"""Linear probes: which source tokens the frozen decoder states hold (Alain & Bengio 2016).

A softmax regression, trained on the frozen (standardized) state z, recovers the source
token at position j:

    p(x_j = v | z) = softmax(W z + b)_v

and is compared against the same probe on the model at initialization (the control).
Documented in docs/instruments.md#probing-the-bottleneck.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from attention_jax import fileio, plots
from attention_jax import workdir as workdir_lib
from attention_jax.data import synthetic
from attention_jax.data.batching import pad_batch
from attention_jax.errors import EvalError
from attention_jax.sweeps.tables import bands, write_csv

PROBE_MODELS = ("rnn_encdec", "seq2seq_lstm", "rnnsearch", "luong")
SPLITS = ("eval", "test")
MIN_SOURCES = 20  # distinct sources a length needs to be probed
TRAIN_FRACTION = 0.8  # of a length's sources, for fitting the probes
PHASES = ("trained", "control")
# Tasks whose target has its source's length: the decoder maps' steps.
SAME_LENGTH_TASKS = ("copy", "reverse", "sort")
INITIAL_CSV, DECODER_CSV, SUMMARY_JSON = ("initial_state.csv", "decoder_states.csv", "probe.json")


# --------------------------------------------------------------------------
# Fitting probes


@functools.partial(jax.jit, static_argnames=("num_classes", "steps"))
def _fit(
  x, y, w, x_test, y_test, w_test, *, num_classes: int, steps: int, learning_rate: float, l2: float
):
  """Probes of G groups × J targets; see :func:`fit_probes`."""

  def group(x, y, w, x_test, y_test, w_test):
    n = jnp.maximum(w.sum(), 1.0)
    mean = (x * w[:, None]).sum(0) / n
    std = jnp.sqrt((((x - mean) ** 2) * w[:, None]).sum(0) / n) + 1e-6
    x, x_test = (x - mean) / std, (x_test - mean) / std
    m = jnp.maximum(w_test.sum(), 1.0)
    tx = optax.adam(learning_rate)

    def probe(y, y_test):
      def loss(p):
        ce = optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"], y)
        return (ce * w).sum() / n + l2 * (p["w"] ** 2).sum()

      def step(carry, _):
        p, state = carry
        updates, state = tx.update(jax.grad(loss)(p), state, p)
        return (optax.apply_updates(p, updates), state), None

      p0 = {"w": jnp.zeros((x.shape[-1], num_classes)), "b": jnp.zeros(num_classes)}
      (p, _), _ = jax.lax.scan(step, (p0, tx.init(p0)), None, length=steps)
      pred = jnp.argmax(x_test @ p["w"] + p["b"], -1)
      counts = (jax.nn.one_hot(y, num_classes) * w[:, None]).sum(0)
      majority = jnp.argmax(counts)
      return (((pred == y_test) * w_test).sum() / m, ((y_test == majority) * w_test).sum() / m)

    return jax.vmap(probe)(y, y_test)

  return jax.vmap(group)(x, y, w, x_test, y_test, w_test)


def fit_probes(
  x: np.ndarray,
  y: np.ndarray,
  w: np.ndarray,
  x_test: np.ndarray,
  y_test: np.ndarray,
  w_test: np.ndarray,
  *,
  num_classes: int,
  steps: int = 200,
  learning_rate: float = 0.05,
  l2: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
  """Softmax-regression probes, G groups of J probes that share their inputs.

  x [G, n, F] (states), y [G, J, n] (labels in ``0..num_classes-1``),
  w [G, n] (1 = a real example, 0 = padding); the same for the test part
  (``m`` rows). Each group's features are standardized with its training
  rows' mean and standard deviation; each probe is W [F, C], b [C] from zero,
  ``steps`` full-batch Adam steps on the mean cross-entropy + ``l2``·‖W‖².
  Returns (test accuracy [G, J], chance [G, J]: the accuracy of always
  answering the training labels' most frequent class).
  """
  acc, chance = _fit(
    jnp.asarray(x, jnp.float32),
    jnp.asarray(y, jnp.int32),
    jnp.asarray(w, jnp.float32),
    jnp.asarray(x_test, jnp.float32),
    jnp.asarray(y_test, jnp.int32),
    jnp.asarray(w_test, jnp.float32),
    num_classes=num_classes,
    steps=steps,
    learning_rate=learning_rate,
    l2=l2,
  )
  return np.asarray(acc), np.asarray(chance)


# --------------------------------------------------------------------------
# Probe data: distinct held-out sources per length, and their states


def draw_sources(
  task, split: str, lengths: Sequence[int], per_length: int, seed: int
) -> dict[int, list[tuple[list[int], list[int]]]]:
  """Up to ``per_length`` (source, target) pairs of distinct sources of each
  length from ``split`` (drawn as the task draws its evaluation sets, from
  generator ``seed``), in draw order. Lengths count the task's
  ``length_unit``."""
  want = set(lengths)
  out: dict[int, list] = {L: [] for L in lengths}
  seen: set = set()
  rng = np.random.default_rng([seed, 17])
  for _ in range(4):  # a few rounds top up rare lengths
    if all(len(out[L]) >= per_length for L in lengths):
      break
    n = int(1.5 * per_length * len(lengths))
    for src, tgt in task.examples(split, rng, n):
      key = tuple(src)
      if len(src) in want and key not in seen and len(out[len(src)]) < per_length:
        seen.add(key)
        out[len(src)].append((list(src), list(tgt)))
  return out


def _state_fns(graphdef):
  """Jitted (params, src) -> initial features and (params, src, tgt_in) ->
  decoder features {name: [B, T, F]} (teacher-forced through decode_step)."""

  def initial(params, src):
    model = nnx.merge(graphdef, params)
    return model.state_features(model.init_decode_state(model.encode(src)))

  def decoder(params, src, tgt_in):
    model = nnx.merge(graphdef, params)
    memory = model.encode(src)

    def body(state, token):
      _, state, _ = model.decode_step(memory, state, token)
      return state, model.state_features(state)

    _, feats = jax.lax.scan(body, model.init_decode_state(memory), tgt_in.T)
    return {k: jnp.swapaxes(v, 0, 1) for k, v in feats.items()}  # (B, T, F)

  return jax.jit(initial), jax.jit(decoder)


def _batched(fn, arrays: Sequence[np.ndarray], batch: int) -> dict[str, np.ndarray]:
  """``fn`` over rows in fixed-size batches (the last padded by repetition),
  outputs concatenated."""
  N = len(arrays[0])
  out: dict[str, list] = {}
  for start in range(0, N, batch):
    chunk = [a[start : start + batch] for a in arrays]
    real = len(chunk[0])
    if real < batch:
      chunk = [np.concatenate([c, np.repeat(c[-1:], batch - real, 0)]) for c in chunk]
    for k, v in jax.device_get(fn(*map(jnp.asarray, chunk))).items():
      out.setdefault(k, []).append(np.asarray(v, np.float32)[:real])
  return {k: np.concatenate(v) for k, v in out.items()}


def _split_index(n: int, seed: int, length: int) -> tuple[np.ndarray, np.ndarray]:
  order = np.random.default_rng([seed, 29, length]).permutation(n)
  k = int(round(TRAIN_FRACTION * n))
  return order[:k], order[k:]


def _stack_groups(groups: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], J: int):
  """[(x_train, y_train, x_test, y_test)] with y [n, L] -> padded arrays for
  :func:`fit_probes` (labels [G, J, n]; masks mark real rows)."""
  n = max(len(g[0]) for g in groups)
  m = max(len(g[2]) for g in groups)
  F = groups[0][0].shape[-1]
  G = len(groups)
  arrays = {
    "x": np.zeros((G, n, F), np.float32),
    "y": np.zeros((G, J, n), np.int32),
    "w": np.zeros((G, n), np.float32),
    "x_test": np.zeros((G, m, F), np.float32),
    "y_test": np.zeros((G, J, m), np.int32),
    "w_test": np.zeros((G, m), np.float32),
  }
  for g, (xtr, ytr, xte, yte) in enumerate(groups):
    a, b = len(xtr), len(xte)
    arrays["x"][g, :a], arrays["w"][g, :a] = xtr, 1.0
    arrays["x_test"][g, :b], arrays["w_test"][g, :b] = xte, 1.0
    arrays["y"][g, : ytr.shape[1], :a] = ytr.T
    arrays["y_test"][g, : yte.shape[1], :b] = yte.T
  return arrays


# --------------------------------------------------------------------------
# The instrument


def default_decoder_lengths(lengths: Sequence[int]) -> list[int]:
  """Up to three lengths for the decoder maps: the longest, and about a
  third and two thirds of it."""
  hi = max(lengths)
  picks = {hi, max(1, round(hi / 3)), max(1, round(2 * hi / 3))}
  return sorted(L for L in picks if L in lengths)


def check_probeable(config, task) -> None:
  """EvalError (one line) unless ``config``'s model and task can be probed."""
  if config.model.name not in PROBE_MODELS:
    raise EvalError(
      f"model {config.model.name!r} has no recurrent decoder state "
      "to probe; probes read the states of: " + ", ".join(PROBE_MODELS)
    )
  if config.data.task not in synthetic.TASKS:
    raise EvalError(
      f"data.task {config.data.task!r}: probes need a synthetic task "
      "that draws fresh held-out sources (reverse, copy, sort, "
      "addition, reorder)"
    )


def probe_workdir(
  workdir: str,
  split: str = "test",
  *,
  per_length: int = 200,
  decoder_lengths: Sequence[int] | None = None,
  seed: int = 0,
  steps: int = 200,
  step: int | str | None = None,
  batch_size: int = 256,
) -> dict[str, Any]:
  """Probes the trained model in ``workdir`` (checkpoint ``step``) and the
  same model at initialization; writes ``workdir/probe/``. Returns the
  summary written to ``probe.json`` (with the paths written)."""
  if split not in SPLITS:
    raise EvalError(f"--split {split!r}: allowed: {', '.join(SPLITS)}")
  if per_length < MIN_SOURCES:
    raise EvalError(
      f"--examples_per_length {per_length}: at least {MIN_SOURCES} "
      "are needed to fit and test a probe"
    )
  run = workdir_lib.load(workdir, step)
  config, task = run.config, run.task
  check_probeable(config, task)
  lengths = list(range(config.data.eval_min_length, config.data.eval_max_length + 1))
  if config.data.task not in SAME_LENGTH_TASKS:
    # The maps feed the decoder L + 1 teacher-forced steps for a source of L
    # tokens: past a shorter target (addition) they would read padding, and a
    # longer one (reorder) would be cut.
    if decoder_lengths:
      raise EvalError(
        f"--decoder_lengths: the decoder maps need a target as long "
        f"as its source ({', '.join(SAME_LENGTH_TASKS)}); "
        f"data.task is {config.data.task!r}"
      )
    decoder_lengths = []
  decoder_lengths = (
    default_decoder_lengths(lengths) if decoder_lengths is None else sorted(set(decoder_lengths))
  )
  bad = [L for L in decoder_lengths if L not in lengths]
  if bad:
    raise EvalError(
      f"--decoder_lengths {bad}: outside the run's evaluation lengths "
      f"{lengths[0]}..{lengths[-1]} (data.eval_min_length.."
      "data.eval_max_length)"
    )
  sources = draw_sources(task, split, lengths, per_length, seed)
  skipped = {L: len(s) for L, s in sources.items() if len(s) < MIN_SOURCES}
  probed = [L for L in lengths if L not in skipped]
  if not probed:
    raise EvalError(
      f"no source length of {lengths[0]}..{lengths[-1]} has "
      f"{MIN_SOURCES} distinct {split} sources to probe"
    )
  decoder_lengths = [L for L in decoder_lengths if L in probed]
  init_params = workdir_lib.make_run(config, workdir, task=task).state.params
  params = {"trained": run.state.params, "control": init_params}
  initial_fn, decoder_fn = _state_fns(run.graphdef)
  classes = len(task.src_vocab)
  src_w, tgt_w = synthetic.widths(config.data.task, config.data.eval_max_length)
  batch = pad_batch([pair for L in probed for pair in sources[L]], src_w, tgt_w)
  row_of = np.cumsum([0] + [len(sources[L]) for L in probed])
  initial_rows, decoder_rows = [], []
  for phase in PHASES:
    fit = functools.partial(fit_probes, num_classes=classes, steps=steps)
    feats = _batched(functools.partial(initial_fn, params[phase]), [batch["src"]], batch_size)
    for name, z in feats.items():
      groups = []
      for g, L in enumerate(probed):
        rows = np.arange(row_of[g], row_of[g + 1])
        tr, te = _split_index(len(rows), seed, L)
        labels = batch["src"][rows, :L]
        groups.append((z[rows[tr]], labels[tr], z[rows[te]], labels[te]))
      acc, chance = fit(**_stack_groups(groups, max(probed)))
      for g, L in enumerate(probed):
        for j in range(L):
          initial_rows.append(_row(phase, name, L, None, j, acc[g, j], chance[g, j], groups[g]))
    # Every (length, step) of the decoder maps in one fit per state: one
    # compiled probe shape (rows and labels padded) instead of one per length.
    cells: dict[str, list] = {}  # name -> [(L, i, group)]
    for L in decoder_lengths:
      g = probed.index(L)
      rows = np.arange(row_of[g], row_of[g + 1])
      feats = _batched(
        functools.partial(decoder_fn, params[phase]),
        [batch["src"][rows], batch["tgt_in"][rows, : L + 1]],
        batch_size,
      )
      tr, te = _split_index(len(rows), seed, L)
      labels = batch["src"][rows, :L]
      for name, z in feats.items():  # z (n, L+1, F)
        cells.setdefault(name, []).extend(
          (L, i, (z[tr, i], labels[tr], z[te, i], labels[te])) for i in range(L + 1)
        )
    for name, cs in cells.items():
      acc, chance = fit(**_stack_groups([c[2] for c in cs], max(decoder_lengths)))
      for k, (L, i, group) in enumerate(cs):
        for j in range(L):
          decoder_rows.append(_row(phase, name, L, i, j, acc[k, j], chance[k, j], group))
  initial_rows = _with_selectivity(initial_rows)
  decoder_rows = _with_selectivity(decoder_rows)
  out_dir = os.path.join(workdir, "probe")
  os.makedirs(out_dir, exist_ok=True)
  summary = {
    "workdir": os.path.abspath(workdir),
    "step": int(run.state.step),
    "model": config.model.name,
    "task": config.data.task,
    "split": split,
    "hidden_size": config.model.hidden_size,
    "seed": seed,
    "sources_per_length": per_length,
    "probe_steps": steps,
    "train_fraction": TRAIN_FRACTION,
    "lengths": probed,
    "skipped_lengths": {str(L): n for L, n in skipped.items()},
    "decoder_lengths": decoder_lengths,
    "classes": classes,
    "states": sorted({r["state"] for r in initial_rows}),
    "what": (
      "softmax-regression probes (optax Adam, full batch) reading the "
      "source token at each position from the decoder's initial state "
      "and from the decoder state after each output step (teacher-"
      "forced); accuracy on held-out probe data; control = the same "
      "probes on the model at initialization; selectivity = trained - "
      "control; chance = always the most frequent training token"
    ),
    "initial_state": summarize_initial(initial_rows),
  }
  paths = {
    "initial_csv": os.path.join(out_dir, INITIAL_CSV),
    "decoder_csv": os.path.join(out_dir, DECODER_CSV),
    "json": os.path.join(out_dir, SUMMARY_JSON),
    "initial_png": os.path.join(out_dir, "initial_state.png"),
    "decoder_png": os.path.join(out_dir, "decoder_states.png"),
  }
  write_csv(paths["initial_csv"], initial_rows)
  write_csv(paths["decoder_csv"], decoder_rows)
  title = (
    f"{config.model.name} (hidden {config.model.hidden_size}) on "
    f"{config.data.task}, step {int(run.state.step)}"
  )
  plots.save_probe_by_position(paths["initial_png"], initial_rows, title=title)
  needed = {L: _needed_cells(task, sources[L]) for L in decoder_lengths}
  if decoder_rows:
    plots.save_probe_maps(paths["decoder_png"], decoder_rows, needed, title=title)
  else:
    del paths["decoder_png"]
  summary["paths"] = paths
  fileio.atomic_write_text(paths["json"], json.dumps(summary, indent=2) + "\n")
  return summary


def _needed_cells(task, pairs) -> list[int] | None:
  """The source position whose token each target position needs (the gold
  alignment), when it is the same for every source of this length (copy,
  reverse); else None."""
  if not hasattr(task, "gold_alignment"):
    return None
  golds = {tuple(a) for a in (task.gold_alignment(s) for s, _ in pairs) if a is not None}
  return list(next(iter(golds))) if len(golds) == 1 else None


def _row(phase, name, L, i, j, acc, chance, group) -> dict[str, Any]:
  row = {"phase": phase, "state": name, "length": L}
  if i is not None:
    row["step"] = i + 1
  row.update(
    position=j + 1,
    accuracy=round(float(acc), 6),
    chance=round(float(chance), 6),
    train_examples=len(group[0]),
    test_examples=len(group[2]),
  )
  return row


def _with_selectivity(rows: list[dict]) -> list[dict]:
  """One row per probe: trained accuracy, control accuracy, selectivity."""

  def key(r):
    return (r["state"], r["length"], r.get("step"), r["position"])

  control = {key(r): r["accuracy"] for r in rows if r["phase"] == "control"}
  out = []
  for r in rows:
    if r["phase"] != "trained":
      continue
    r = {k: v for k, v in r.items() if k != "phase"}
    c = control[key(r)]
    pos = list(r).index("accuracy") + 1
    items = list(r.items())
    items[pos:pos] = [("control_accuracy", c), ("selectivity", round(r["accuracy"] - c, 6))]
    out.append(dict(items))
  return out


def summarize_initial(rows: list[dict]) -> dict[str, Any]:
  """Per state: mean accuracy, control and chance over positions, by length;
  and the first and last positions' accuracy."""
  out: dict[str, Any] = {}
  for name in sorted({r["state"] for r in rows}):
    by_len = []
    for L in sorted({r["length"] for r in rows if r["state"] == name}):
      rs = [r for r in rows if r["state"] == name and r["length"] == L]
      rs.sort(key=lambda r: r["position"])
      by_len.append(
        {
          "length": L,
          "accuracy": round(float(np.mean([r["accuracy"] for r in rs])), 4),
          "control_accuracy": round(float(np.mean([r["control_accuracy"] for r in rs])), 4),
          "chance": round(float(np.mean([r["chance"] for r in rs])), 4),
          "first_position": rs[0]["accuracy"],
          "last_position": rs[-1]["accuracy"],
        }
      )
    out[name] = by_len
  return out


def format_summary(summary: dict[str, Any]) -> str:
  """The lines ``experiments.probe`` prints: per state, accuracy by length
  band against control and chance."""
  lines = [
    f"probes of {summary['model']} (hidden {summary['hidden_size']}) on "
    f"{summary['task']} at step {summary['step']}: {summary['split']} "
    f"sources, up to {summary['sources_per_length']} per length "
    f"({int(100 * summary['train_fraction'])}% fit the probes, the rest "
    "scores them)"
  ]
  if summary["skipped_lengths"]:
    lines.append(
      f"  skipped (fewer than {MIN_SOURCES} distinct sources): "
      + ", ".join(f"length {L} ({n})" for L, n in summary["skipped_lengths"].items())
    )
  for name, by_len in summary["initial_state"].items():
    lines.append(
      f"  initial state {name!r}: source token read out (mean over "
      "positions) — trained / at init / chance"
    )
    for band in bands([r["length"] for r in by_len]):
      rs = [r for r in by_len if band[0] <= r["length"] <= band[1]]

      def mean(k, rs=rs):
        return float(np.mean([r[k] for r in rs]))

      lines.append(
        f"    lengths {band[0]:>2}-{band[1]:<2}: {mean('accuracy'):.3f} / "
        f"{mean('control_accuracy'):.3f} / {mean('chance'):.3f}   "
        f"first position {mean('first_position'):.3f}, last "
        f"{mean('last_position'):.3f}"
      )
  lines.append("wrote " + ", ".join(summary["paths"].values()))
  return "\n".join(lines)
