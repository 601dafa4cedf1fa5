"""The package's layering, read from its source (imports nothing it checks).

* no import cycle among ``attention_jax``'s modules, counting every import
  statement (module- and function-level);
* the training loop is imported by ``experiments/run.py`` alone;
* ``config.py`` (the schema) imports no package module but ``errors``, and
  the models import neither ``ml_collections`` nor the config or the data;
* ``workdir.py`` is the only module that names ``config.json`` in code;
* inside the package, function-level imports only for optional packages;
* no path tricks (``sys.path`` edits) and no references to files outside
  the repository;
* no dated measurement or timing in the docstrings and comments of
  ``attention_jax/`` and ``configs/`` (numbers live in docs/);
* module docstrings of ``attention_jax/`` short (at most
  ``MAX_MODULE_DOCSTRING_LINES``; the long form lives in docs/);
* files are replaced only through the atomic-write helper.
"""

import ast
import io
import pathlib
import re
import tokenize

from conftest import ROOT

PACKAGE = pathlib.Path(ROOT) / "attention_jax"
SOURCES = [
  p
  for d in ("attention_jax", "experiments", "configs", "tests", "tools")
  for p in sorted((pathlib.Path(ROOT) / d).rglob("*.py"))
]
# Imported where used: torch, and the module that needs it (the benchmarks' torch rows).
OPTIONAL = {"torch", "attention_jax.benchmarks.torch_models"}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: pathlib.Path):
  """(module imported, node) of every import statement in ``path``."""
  name = _module_name(path)
  pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield a.name, node
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = pkg.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
      for a in node.names:  # `from pkg import sub` depends on the submodule
        full = f"{base}.{a.name}"
        yield (full if full in MODULES else base), node


def test_no_import_cycles():
  graph = {m: {d for d, _ in _imports(p) if d in MODULES and d != m} for m, p in MODULES.items()}
  cycles, done, stack = [], set(), []

  def visit(u):
    if u in stack:
      cycles.append(stack[stack.index(u) :] + [u])
      return
    if u in done:
      return
    done.add(u)
    stack.append(u)
    for v in sorted(graph[u]):
      visit(v)
    stack.pop()

  for m in sorted(graph):
    visit(m)
  assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_only_the_run_entry_point_imports_the_training_loop():
  importers = sorted(
    str(p.relative_to(ROOT))
    for p in SOURCES
    if not p.parts[-2] == "tests" and any(d == "attention_jax.train" for d, _ in _imports(p))
  )
  assert importers == ["experiments/run.py"], importers


def test_the_schema_and_the_models_import_no_registries_or_configs():
  config_deps = sorted(d for d, _ in _imports(MODULES["attention_jax.config"]) if d in MODULES)
  assert config_deps == ["attention_jax.errors"], config_deps
  bad = []
  for name, path in MODULES.items():
    if name.startswith("attention_jax.models"):
      for dep, node in _imports(path):
        if dep.split(".")[0] == "ml_collections" or dep in (
          "attention_jax.config",
          "attention_jax.data",
          "attention_jax.validation",
          "attention_jax.model_setup",
        ):
          bad.append(f"{path.relative_to(ROOT)}:{node.lineno} {dep}")
  assert not bad, bad


def _code_strings(path: pathlib.Path):
  """String constants of ``path`` that are not docstrings."""
  tree = ast.parse(path.read_text(encoding="utf-8"))
  docs = set()
  for node in ast.walk(tree):
    if isinstance(
      node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    ) and ast.get_docstring(node):
      docs.add(id(node.body[0].value))
  return [
    n.value
    for n in ast.walk(tree)
    if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
  ]


def test_only_the_workdir_module_names_config_json():
  namers = sorted(
    str(p.relative_to(ROOT))
    for p in MODULES.values()
    if any("config.json" in s for s in _code_strings(p))
  )
  assert namers == ["attention_jax/workdir.py"], namers


def test_function_level_imports_only_for_optional_packages():
  found = []
  for path in MODULES.values():
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for sub in ast.walk(node):
          if isinstance(sub, (ast.Import, ast.ImportFrom)):
            names = (
              [a.name for a in sub.names] if isinstance(sub, ast.Import) else [sub.module or ""]
            )
            if not all(n in OPTIONAL or n.split(".")[0] in OPTIONAL for n in names):
              found.append(f"{path.relative_to(ROOT)}:{sub.lineno} {names}")
  assert not found, found


def test_no_path_tricks_or_references_outside_the_repository():
  bad = []
  for path in SOURCES:
    text = path.read_text(encoding="utf-8")
    # (spelled in parts, so that this file is not a match itself)
    for needle in ("sys.path" + ".insert", "STACK" + "_NOTES", "../" + "shared"):
      if needle in text:
        bad.append(f"{path.relative_to(ROOT)}: {needle}")
  assert not bad, bad


def test_files_are_replaced_only_through_the_atomic_write_helper():
  """Every write-then-rename is ``attention_jax.fileio``'s (temporary file in
  the same directory, fsync, ``os.replace``, fsync of the directory); the
  checkpointer's move of a whole step directory to quarantine is the one
  other rename."""
  allowed = {("attention_jax/fileio.py", 1), ("attention_jax/checkpoint.py", 1)}
  found = set()
  for path in SOURCES:
    if path.relative_to(ROOT).parts[0] == "tests":
      continue
    n = path.read_text(encoding="utf-8").count("os.replace(")
    if n:
      found.add((str(path.relative_to(ROOT)), n))
  assert found == allowed


_MONTH = (
  r"(?:January|February|March|April|May|June|July|August|September|October|November|"
  r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.?"
)
# A dated or timed measurement: a month and a year, an ISO year-month, "Measured",
# "took N s", a duration in ms or "N min N s", a wall-clock or steps/s figure.
MEASUREMENT = re.compile(
  rf"\b{_MONTH}\s+(?:\d{{1,2}},?\s+)?(?:19|20)\d{{2}}\b"
  r"|\b(?:19|20)\d{2}-(?:0[1-9]|1[0-2])\b"
  r"|\bMeasured\b"
  r"|\btook\s+~?\d[\d.,]*\s*(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b"
  r"|\d(?:[\d.,]*\d)?\s*ms\b"
  r"|\b\d+\s*min\s+\d+\s*s\b"
  r"|\d\s*s\s+wall\b"
  r"|\d\s*steps/s\b"
)


def test_measurement_pattern_catches_measurements_not_citations():
  for text in (
    "Measured (2-core CPU dev machine, 30 Nov\n2026, shared with two other processes)",
    "``python -m experiments.run --config configs/luong.py --workdir W`` took 283 s",
    "(LSTM fwd+bwd, B64 T100 H512 float32: 5.84 -> 3.16 ms)",
    "the whole sweep took 17 min 22 s on the idle machine",
    "CPU default, 12 min 43 s with --jobs 2",
    "206 s wall (10–42 steps/s under that load)",
    "checked 2026-11-29 on the dev machine",
    "on the Vim user manual, 2-core CPU (30 Nov 2026, the other core busy)",
  ):
    assert MEASUREMENT.search(text), text
  for text in (
    "additive attention (Bahdanau et al. 2014, eq. 6)",
    "Vaswani et al. 2017, eq. 3: lr = peak · min(step / warmup, √(warmup / step))",
    "Sutskever et al. 2014 §3.3; Press et al. 2022; Su et al. 2021",
    "which measured faster on CPU (docs/performance.md)",
    "``SIGNAL_DELAY_S`` seconds before the time limit",
  ):
    assert not MEASUREMENT.search(text), text


def _docs_and_comments(path: pathlib.Path):
  """(line, text) of every docstring and comment in ``path``."""
  source = path.read_text(encoding="utf-8")
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      doc = ast.get_docstring(node, clean=False)
      if doc:
        yield node.body[0].lineno, doc
  comments = [
    (tok.start[0], tok.string.lstrip("#"))
    for tok in tokenize.generate_tokens(io.StringIO(source).readline)
    if tok.type == tokenize.COMMENT
  ]
  for i, (line, text) in enumerate(comments):  # with the next line: a date split in two
    follows = comments[i + 1][1] if i + 1 < len(comments) and comments[i + 1][0] == line + 1 else ""
    yield line, f"{text} {follows}"


def test_no_dated_measurements_in_code_or_configs():
  found = [
    f"{path.relative_to(ROOT)}:{line}: {m.group(0)!r}"
    for path in SOURCES
    if path.relative_to(ROOT).parts[0] in ("attention_jax", "configs")
    for line, text in _docs_and_comments(path)
    for m in [MEASUREMENT.search(text)]
    if m
  ]
  assert not found, "measurements belong in docs/: " + "; ".join(found)


MAX_MODULE_DOCSTRING_LINES = 12


def test_module_docstrings_are_short():
  long = sorted(
    (n, str(path.relative_to(ROOT)))
    for path in MODULES.values()
    for doc in [ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))]
    for n in [len(doc.splitlines()) if doc else 0]
    if n > MAX_MODULE_DOCSTRING_LINES
  )
  assert not long, (
    f"module docstrings over {MAX_MODULE_DOCSTRING_LINES} lines (a one-line summary, a few "
    "lines of what and why, the paper's equation; the rest in docs/): "
    + ", ".join(f"{p} ({n})" for n, p in reversed(long))
  )
