"""English→X parallel text from the gettext message catalogs a system installs.

``build(target, out)`` reads every ``<locale_dir>/<target>/LC_MESSAGES/*.mo``
(GNU ``.mo`` files: the ``msgid`` is the English source, the ``msgstr`` its
translation), keeps the sentence-like messages, splits them into
train/dev/test by a hash of the source and writes ``out/{train,dev,test}.tsv``
and ``out/manifest.json``. No network; the same catalogs give byte-identical
files. ``experiments.make_corpus`` is its command line; docs/data.md says what
the corpus is.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import struct
from collections import Counter
from collections.abc import Iterable

from attention_jax import fileio
from attention_jax.errors import DataError

LOCALE_DIR = "/usr/share/locale"
SPLITS = ("train", "dev", "test")
# Split of a source by sha256(source) % 1000: [0, 940) train, [940, 960) dev, else test.
SPLIT_BOUNDS = (940, 960, 1000)
MIN_WORDS, MAX_WORDS = 3, 60
MIN_PAIRS = 1000  # fewer kept pairs: the language is refused

_MO_MAGIC = (0x950412DE, 0xDE120495)
# printf (%s, %1$d, %(x)s, %-5.2f), Python/ICU braces ({0}, {name}), shell ${x}, $x.
_FORMAT = re.compile(r"%[-+ #0-9.*$lhqjzt]*[a-zA-Z%@]|%\([^)]*\)|\{[^{}]*\}|\$\{?[A-Za-z_]")
_MARKUP = re.compile(r"<[^<>]*>|&[A-Za-z#][A-Za-z0-9]*;")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\\\u2028\u2029]")

FILTERS = {
  "words": f"{MIN_WORDS}-{MAX_WORDS} whitespace-separated words on each side",
  "format_codes": "no printf/brace/shell placeholders (%s, %(x)s, {0}, ${x})",
  "markup": "no <tags> or &entities;",
  "escapes": "no control characters (tab, newline, ...) or backslashes",
  "identical": "source and target differ",
  "plural_or_context": "plural entries dropped; a msgctxt prefix removed",
  "one_target": "per source, the target given by most catalogs (ties: the smallest string)",
  "split": "sha256(source) % 1000: < 940 train, < 960 dev, else test",
}


def read_mo(data: bytes, name: str = "<mo>") -> list[tuple[str, str]]:
  """The (msgid, msgstr) pairs of a GNU ``.mo`` file (the header entry, with
  an empty msgid, left out). Plural entries come with their NUL-joined forms;
  a ``msgctxt`` stays as ``context\\x04msgid``."""
  if len(data) < 20:
    raise DataError(f"{name}: not a .mo file (too short)")
  (magic,) = struct.unpack("<I", data[:4])
  if magic not in _MO_MAGIC:
    raise DataError(f"{name}: not a .mo file (bad magic number)")
  e = "<" if magic == _MO_MAGIC[0] else ">"
  _, n, orig, trans = struct.unpack(e + "4I", data[4:20])
  raw = []
  try:
    for i in range(n):
      olen, ooff = struct.unpack(e + "2I", data[orig + 8 * i : orig + 8 * i + 8])
      tlen, toff = struct.unpack(e + "2I", data[trans + 8 * i : trans + 8 * i + 8])
      if ooff + olen > len(data) or toff + tlen > len(data):
        raise DataError(f"{name}: entry {i} points past the end of the file")
      raw.append((data[ooff : ooff + olen], data[toff : toff + tlen]))
  except struct.error as err:
    raise DataError(f"{name}: truncated .mo file") from err
  charset = "utf-8"
  for msgid, msgstr in raw:
    if not msgid:
      m = re.search(rb"charset=([A-Za-z0-9_.:-]+)", msgstr)
      if m:
        charset = m.group(1).decode("ascii")
  out = []
  for msgid, msgstr in raw:
    if not msgid:
      continue
    try:
      out.append((msgid.decode(charset), msgstr.decode(charset)))
    except (UnicodeDecodeError, LookupError):
      continue  # a message not in the catalog's charset is dropped
  return out


def write_mo(pairs: Iterable[tuple[str, str]], charset: str = "UTF-8") -> bytes:
  """A GNU ``.mo`` file (little-endian, no hash table) holding ``pairs`` and a
  header naming ``charset`` — what ``msgfmt`` writes, for tests and fixtures."""
  header = f"Content-Type: text/plain; charset={charset}\n"
  entries = sorted(
    [(b"", header.encode("ascii"))] + [(s.encode(charset), t.encode(charset)) for s, t in pairs]
  )
  n = len(entries)
  orig_at = 28
  trans_at = orig_at + 8 * n
  data_at = trans_at + 8 * n
  blob, orig, trans = b"", [], []
  for key, _ in entries:
    orig.append((len(key), data_at + len(blob)))
    blob += key + b"\0"
  for _, val in entries:
    trans.append((len(val), data_at + len(blob)))
    blob += val + b"\0"
  head = struct.pack("<7I", _MO_MAGIC[0], 0, n, orig_at, trans_at, 0, 0)
  table = b"".join(struct.pack("<2I", *x) for x in orig + trans)
  return head + table + blob


def reject_reason(source: str, target: str) -> str | None:
  """Which filter drops a (source, target) pair (a key of ``FILTERS``), or None."""
  for text in (source, target):
    if _CONTROL.search(text):
      return "escapes"
  for text in (source, target):
    if _FORMAT.search(text):
      return "format_codes"
    if _MARKUP.search(text):
      return "markup"
  for text in (source, target):
    if not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
      return "words"
  if source == target:
    return "identical"
  return None


def split_of(source: str) -> str:
  h = int.from_bytes(hashlib.sha256(source.encode("utf-8")).digest()[:8], "big") % 1000
  return next(name for name, hi in zip(SPLITS, SPLIT_BOUNDS, strict=True) if h < hi)


def catalogs(target: str, locale_dir: str = LOCALE_DIR) -> list[str]:
  """The ``.mo`` files of language ``target``, sorted by path."""
  if not re.fullmatch(r"[A-Za-z]{2,3}([_@][A-Za-z0-9]+)*", target):
    raise DataError(f"--target {target!r}: expected a locale name such as de, fr or pt_BR")
  return sorted(glob.glob(os.path.join(locale_dir, target, "LC_MESSAGES", "*.mo")))


def collect(paths: Iterable[str]) -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
  """One target per kept source, the reasons pairs were dropped, and the
  pairs each catalog read gave (before the filters)."""
  votes: dict[str, Counter] = {}
  dropped: Counter = Counter()
  read: dict[str, int] = {}
  for path in paths:
    with open(path, "rb") as f:
      entries = read_mo(f.read(), path)
    read[os.path.basename(path)] = len(entries)
    for msgid, msgstr in entries:
      if "\0" in msgid:
        dropped["plural_or_context"] += 1
        continue
      msgid = msgid.rsplit("\x04", 1)[-1]
      source, target = msgid.strip(), msgstr.strip()
      why = "escapes" if not target else reject_reason(source, target)
      if why:
        dropped[why] += 1
        continue
      votes.setdefault(source, Counter())[target] += 1
  chosen = {}
  for source, c in votes.items():
    chosen[source] = min(c, key=lambda t: (-c[t], t))
    dropped["one_target"] += sum(c.values()) - 1
  return chosen, dict(sorted(dropped.items())), read


def _order(source: str) -> bytes:
  return hashlib.sha256(b"order\0" + source.encode("utf-8")).digest()


def build(target: str, out: str, locale_dir: str = LOCALE_DIR, min_pairs: int = MIN_PAIRS) -> dict:
  """Writes ``out/{train,dev,test}.tsv`` (``source<TAB>target``, in an order
  fixed by a hash of the source) and ``out/manifest.json``; returns the
  manifest. Raises :class:`DataError` (nothing written) for a language with no
  catalogs or fewer than ``min_pairs`` kept pairs."""
  paths = catalogs(target, locale_dir)
  where = os.path.join(locale_dir, target, "LC_MESSAGES")
  if not paths:
    raise DataError(f"--target {target}: no gettext catalogs (*.mo) in {where}")
  chosen, dropped, read = collect(paths)
  if len(chosen) < min_pairs:
    raise DataError(
      f"--target {target}: {len(chosen)} sentence pairs kept from {len(paths)} catalogs "
      f"in {where}, fewer than {min_pairs}"
    )
  splits: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
  for source in sorted(chosen, key=_order):
    splits[split_of(source)].append((source, chosen[source]))
  os.makedirs(out, exist_ok=True)
  files = {}
  for name, pairs in splits.items():
    data = "".join(f"{s}\t{t}\n" for s, t in pairs).encode("utf-8")
    path = os.path.join(out, f"{name}.tsv")
    fileio.atomic_write_bytes(path, data)
    files[f"{name}.tsv"] = {"pairs": len(pairs), "sha256": hashlib.sha256(data).hexdigest()}
  manifest = {
    "source": "gettext",
    "languages": f"en-{target}",
    "locale_dir": where,
    "catalogs": len(paths),
    "entries_per_catalog": read,
    "pairs": len(chosen),
    "files": files,
    "dropped": dropped,
    "filters": FILTERS,
  }
  with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=2, sort_keys=True, ensure_ascii=False)
    f.write("\n")
  return manifest
