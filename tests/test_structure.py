"""The package's layering, read from its source (imports nothing it checks).

* no import cycle among ``attention_jax``'s modules, counting every import
  statement (module- and function-level);
* the training loop is imported by ``experiments/run.py`` alone;
* ``workdir.py`` is the only module that names ``config.json`` in code;
* inside the package, function-level imports only for optional packages;
* no path tricks (``sys.path`` edits) and no references to files outside
  the repository.
"""

import ast
import pathlib

from conftest import ROOT

PACKAGE = pathlib.Path(ROOT) / "attention_jax"
SOURCES = [
  p
  for d in ("attention_jax", "experiments", "configs", "tests", "tools")
  for p in sorted((pathlib.Path(ROOT) / d).rglob("*.py"))
]
OPTIONAL = {"torch"}  # imported where used: the benchmarks' torch rows


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
            if not all(n.split(".")[0] in OPTIONAL for n in names):
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
