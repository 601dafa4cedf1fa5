"""The README is a front door and docs/ holds the rest: links, size, names.

Reads README.md and docs/**/*.md as text (no jax): every relative link and
anchor resolves inside the repository, README.md stays under its cap with its
``## Layout`` section in the first third, every docs page is linked from the
README and every file under docs/ is reachable from it, nothing points outside
the repository, and the commands, paths and config keys the pages name exist.
"""

from __future__ import annotations

import importlib
import pathlib
import re

import pytest

from attention_jax.config import base_config

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_CAP_BYTES = 15_000

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _pages() -> list[pathlib.Path]:
  return [README] + sorted(DOCS.rglob("*.md"))


def _text(path: pathlib.Path) -> str:
  return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
  """The text without code blocks and inline code (links are not parsed there)."""
  return _INLINE_CODE.sub("", _FENCE.sub("", text))


def _code(text: str) -> str:
  """Code blocks and inline code only."""
  return "\n".join(_FENCE.findall(text) + _INLINE_CODE.findall(text))


def github_slug(heading: str) -> str:
  """GitHub's anchor for a heading: lower case, punctuation dropped (word
  characters, spaces and hyphens kept), spaces to hyphens."""
  text = heading.strip().lower().replace("`", "")
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


def _anchors(path: pathlib.Path) -> set[str]:
  seen: dict[str, int] = {}
  out = set()
  for _, title in _HEADING.findall(_FENCE.sub("", _text(path))):
    slug = github_slug(title)
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    out.add(slug if n == 0 else f"{slug}-{n}")
  return out


def _links(path: pathlib.Path) -> list[str]:
  return [
    t for t in _LINK.findall(_prose(_text(path))) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)
  ]  # skip http:, mailto:


def _resolve(page: pathlib.Path, target: str) -> tuple[pathlib.Path, str]:
  file_part, _, anchor = target.partition("#")
  dest = (page.parent / file_part).resolve() if file_part else page
  return dest, anchor


def test_github_slug_matches_known_anchors():
  assert github_slug("`per_model`: one file, several models") == (
    "per_model-one-file-several-models"
  )
  assert github_slug("The real-text recipe: `configs/translate.py`") == (
    "the-real-text-recipe-configstranslatepy"
  )
  assert github_slug("Vanishing gradients (configs/vanishing.py)") == (
    "vanishing-gradients-configsvanishingpy"
  )


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
  bad = []
  for target in _links(page):
    dest, anchor = _resolve(page, target)
    if not dest.is_relative_to(ROOT):
      bad.append(f"{target}: outside the repository")
    elif not dest.exists():
      bad.append(f"{target}: no such file")
    elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
      bad.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
  assert not bad, f"{page.relative_to(ROOT)}: " + "; ".join(bad)


def test_readme_is_a_front_door():
  data = README.read_bytes()
  assert len(data) <= README_CAP_BYTES, (
    f"README.md is {len(data):,} bytes; the cap is {README_CAP_BYTES:,}: move detail to docs/"
  )
  layout = re.search(rb"^## Layout\s*$", data, re.M)
  assert layout, "README.md has no '## Layout' section"
  assert layout.start() < len(data) / 3, (
    f"'## Layout' starts at byte {layout.start():,} of {len(data):,}: not in the first third"
  )


def test_every_docs_page_is_linked_from_readme():
  linked = {_resolve(README, t)[0] for t in _links(README)}
  missing = [p.relative_to(ROOT) for p in sorted(DOCS.glob("*.md")) if p not in linked]
  assert not missing, f"docs pages not linked from README.md: {missing}"


def test_every_docs_file_is_reachable_from_readme():
  """No orphans: each page and figure under docs/ is reached by following
  links from README.md."""
  reached, visited, todo = {README}, set(), [README]
  while todo:
    page = todo.pop()
    if page in visited:
      continue
    visited.add(page)
    for target in _links(page):
      dest, _ = _resolve(page, target)
      reached.add(dest)
      if dest.suffix == ".md" and dest.exists():
        todo.append(dest)
  orphans = [
    p.relative_to(ROOT) for p in sorted(DOCS.rglob("*")) if p.is_file() and p not in reached
  ]
  assert not orphans, f"files under docs/ that no link reaches: {orphans}"


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_refers_outside_the_repository(page):
  text = _text(page)
  # (spelled in parts, so that this file is not a reference itself)
  for needle in ("STACK" + "_NOTES", "../" + "shared", "/" + "work/"):
    assert needle not in text, f"{page.relative_to(ROOT)} mentions {needle!r}"


_REPO_PATH = re.compile(
  r"(?<![\w/.-])((?:attention_jax|experiments|configs|tests|tools|docs"
  r"|data|models|benchmarks|sweeps)/[\w/.*{},<>-]*)"
)
# Short paths inside the package, as the pages write them (``models/gpt.py``).
_PACKAGE_DIRS = ("data/", "models/", "benchmarks/", "sweeps/")


def _named_paths(text: str) -> set[str]:
  """Repository paths named in code (``attention_jax/rnn.py``; the ``.py`` of
  ``configs/x.py:tiny``); patterns (``toy_*.tsv``, ``{a,b}``, ``<slug>``) aside."""
  out = set()
  for path in _REPO_PATH.findall(_code(text)):
    path = path.rstrip(".,")
    if re.search(r"[*{}<>,]", path):
      continue
    if path.startswith(_PACKAGE_DIRS):
      path = "attention_jax/" + path
    out.add(path.rstrip("/"))
  return out


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_named_paths_and_modules_exist(page):
  """Files named in code spans and blocks, ``python -m`` modules and
  ``--config`` files exist (wildcards and placeholders aside)."""
  text = _text(page)
  missing = []
  for path in sorted(_named_paths(text)):
    if not (ROOT / path).exists():
      missing.append(path)
  for module in re.findall(r"python -m ((?:attention_jax|experiments)[\w.]*)", text):
    as_path = ROOT / module.replace(".", "/")
    if not (as_path.with_suffix(".py").exists() or (as_path / "__main__.py").exists()):
      missing.append(f"python -m {module}")
  assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def _resolves(dotted: str) -> bool:
  """Whether ``attention_jax.a.b.name`` is an importable module, or an
  attribute of the longest importable module prefix."""
  parts = dotted.split(".")
  for n in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:n]))
    except ModuleNotFoundError:
      continue
    for name in parts[n:]:
      if not hasattr(obj, name):
        return False
      obj = getattr(obj, name)
    return True
  return False


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_named_python_objects_exist(page):
  """``attention_jax.x.y`` named in code spans is a module or attribute."""
  code = "\n".join(_INLINE_CODE.findall(_text(page)))
  named = set(re.findall(r"\battention_jax(?:\.\w+)+", code))
  missing = sorted(n for n in named if not _resolves(n))
  assert not missing, f"{page.relative_to(ROOT)} names what does not exist: {missing}"


def _schema_keys() -> set[str]:
  def flatten(d, prefix=""):
    for k, v in d.items():
      if hasattr(v, "items") and k != "per_model":
        yield from flatten(v, f"{prefix}{k}.")
      else:
        yield f"{prefix}{k}"

  return set(flatten(base_config()))


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_config_overrides_name_real_keys(page):
  keys = _schema_keys()
  named = set(re.findall(r"--config\.([\w.]+)=", _text(page)))
  named = {k for k in named if not any(part.isupper() for part in k.split("."))}
  unknown = sorted(k for k in named if k not in keys and k != "train.stpes")  # the typo demo
  assert not unknown, f"{page.relative_to(ROOT)} overrides unknown keys: {unknown}"


def test_configs_page_lists_every_key():
  """docs/configs.md's key tables name every key of base_config() and no other."""
  keys = _schema_keys()
  text = _text(DOCS / "configs.md")
  rows = "\n".join(line for line in text.splitlines() if line.startswith("| `"))
  named = set(
    re.findall(
      r"`((?:seed|per_model|(?:model|data|train|eval|checkpoint)"
      r"\.\w+))`",
      rows,
    )
  )
  assert keys - named == set(), f"keys missing from docs/configs.md: {sorted(keys - named)}"
  assert named - keys == set(), f"docs/configs.md names unknown keys: {sorted(named - keys)}"
