"""experiments.make_corpus: .mo parsing, filters, determinism, splits, manifest, refusals."""

import gettext
import hashlib
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from attention_jax.data import gettext_corpus as gc
from attention_jax.errors import DataError

KEPT = [(f"Open the file number {i} now", f"Öffne jetzt die Datei Nummer {i}") for i in range(300)]
REJECTED = {
  "Save %s now please": "Speichere %s jetzt bitte",  # format_codes
  "Delete {0} items now": "Lösche {0} Elemente jetzt",  # format_codes
  "Remove %(name)s from list": "Entferne %(name)s aus Liste",  # format_codes
  "Click <b>here</b> to go": "Klicke <b>hier</b> um zu gehen",  # markup
  "First line\nsecond line here": "Erste Zeile\nzweite Zeile hier",  # escapes
  "A tab\tinside this one": "Ein Tab\tin diesem hier",  # escapes
  "Open": "Öffnen",  # words
  "GNU General Public License": "GNU General Public License",  # identical
}


def _write_catalogs(root, lang="de"):
  d = root / lang / "LC_MESSAGES"
  d.mkdir(parents=True)
  a = KEPT[:200] + list(REJECTED.items()) + [("Print the whole page", "Drucke die ganze Seite")]
  b = KEPT[150:] + [("Print the whole page", "Gesamte Seite drucken")]
  c = [("Print the whole page", "Drucke die ganze Seite")]
  for name, pairs in (("a.mo", a), ("b.mo", b), ("c.mo", c)):
    (d / name).write_bytes(gc.write_mo(pairs))
  return str(root)


@pytest.fixture(scope="module")
def locale_dir(tmp_path_factory):
  return _write_catalogs(tmp_path_factory.mktemp("locale"))


def test_write_mo_is_read_by_gettext(tmp_path):
  """The test's .mo writer agrees with Python's gettext reader and ours."""
  pairs = [("Hello there world", "Hallo da Welt"), ("Ünïcode text here", "Ünïcode Text hier")]
  path = tmp_path / "x.mo"
  path.write_bytes(gc.write_mo(pairs))
  with open(path, "rb") as f:
    t = gettext.GNUTranslations(f)
  assert [t.gettext(s) for s, _ in pairs] == [x for _, x in pairs]
  assert gc.read_mo(path.read_bytes()) == sorted(pairs)
  with pytest.raises(DataError, match="not a .mo file"):
    gc.read_mo(b"\0" * 40, "bad.mo")


def test_filters():
  for s, t in REJECTED.items():
    assert gc.reject_reason(s, t) is not None, s
  assert gc.reject_reason(*KEPT[0]) is None
  # conservative: "50% of" reads as printf's "% o" and is dropped too
  assert gc.reject_reason("Use 50% of the disk", "Nutze 50% der Platte") == "format_codes"
  assert gc.reject_reason("Use half of the disk", "Nutze die Hälfte der Platte") is None


def test_build_split_manifest_determinism(locale_dir, tmp_path):
  m = gc.build("de", str(tmp_path / "a"), locale_dir=locale_dir, min_pairs=10)
  gc.build("de", str(tmp_path / "b"), locale_dir=locale_dir, min_pairs=10)
  for name in ("train.tsv", "dev.tsv", "test.tsv", "manifest.json"):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
  rows = {}
  for split in gc.SPLITS:
    data = (tmp_path / "a" / f"{split}.tsv").read_bytes()
    assert m["files"][f"{split}.tsv"]["sha256"] == hashlib.sha256(data).hexdigest()
    lines = data.decode().splitlines()
    assert all(line.count("\t") == 1 for line in lines)
    rows[split] = dict(line.split("\t") for line in lines)
    assert m["files"][f"{split}.tsv"]["pairs"] == len(lines)
    assert all(gc.split_of(s) == split for s in rows[split])
  everything = {k: v for r in rows.values() for k, v in r.items()}
  assert len(everything) == 301 == m["pairs"]  # 300 + the one with three catalogs
  assert everything["Print the whole page"] == "Drucke die ganze Seite"  # 2 votes of 3
  assert not set(REJECTED) & set(everything)
  n = len(everything)
  assert 0.85 * n < len(rows["train"]) < 0.99 * n  # ~94%
  assert m["catalogs"] == 3 and m["dropped"]["format_codes"] == 3
  assert m["dropped"]["one_target"] == 50 + 2  # KEPT[150:200] twice; the page thrice
  assert json.loads((tmp_path / "a" / "manifest.json").read_text())["filters"] == gc.FILTERS


def _cli(*args):
  return subprocess.run(
    [sys.executable, "-m", "experiments.make_corpus", *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env=dict(os.environ, PYTHONPATH=ROOT),
  )


def test_cli_refuses_missing_or_small_language(locale_dir, tmp_path):
  r = _cli(
    "--from",
    "gettext",
    "--target",
    "xx",
    "--out",
    str(tmp_path / "x"),
    f"--locale_dir={locale_dir}",
  )
  assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
  assert "no gettext catalogs" in r.stderr and not (tmp_path / "x").exists()
  r = _cli("--target", "de", "--out", str(tmp_path / "y"), f"--locale_dir={locale_dir}")
  assert r.returncode == 2 and "fewer than 1000" in r.stderr and r.stderr.count("\n") == 1
  r = _cli(
    "--target", "de", "--out", str(tmp_path / "z"), f"--locale_dir={locale_dir}", "--min_pairs=10"
  )
  assert r.returncode == 0 and "en-de: 301 pairs from 3 catalogs" in r.stdout, r.stderr
