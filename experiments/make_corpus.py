r"""Build a parallel corpus from the gettext catalogs this system installs.

  python -m experiments.make_corpus --from gettext --target de --out D

Writes D/train.tsv, D/dev.tsv, D/test.tsv (``english<TAB>translation``, about
94/2/4% by a hash of the source) and D/manifest.json (catalogs read, pairs
per split, filters, sha256 of each file). No network; the same machine gives
byte-identical files. What the corpus is: docs/data.md.
"""

from absl import app, flags

from experiments import cli

_FROM = flags.DEFINE_enum("from", "gettext", ["gettext"], "Where the text comes from.")
_TARGET = flags.DEFINE_string("target", None, "Target language: a locale name (de, fr, pt_BR).")
_OUT = flags.DEFINE_string("out", None, "Output directory.")
_LOCALE_DIR = flags.DEFINE_string(
  "locale_dir", "/usr/share/locale", "Where the <lang>/LC_MESSAGES/*.mo catalogs are."
)
_MIN_PAIRS = flags.DEFINE_integer(
  "min_pairs", 1000, "Refuse a language with fewer kept pairs than this."
)
flags.mark_flags_as_required(["target", "out"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax.data import gettext_corpus

  with cli.errors_as_one_line():
    m = gettext_corpus.build(
      _TARGET.value, _OUT.value, locale_dir=_LOCALE_DIR.value, min_pairs=_MIN_PAIRS.value
    )
  counts = ", ".join(f"{k} {v['pairs']}" for k, v in m["files"].items())
  print(
    f"en-{_TARGET.value}: {m['pairs']} pairs from {m['catalogs']} catalogs ({counts}); "
    f"wrote {_OUT.value}/{{train,dev,test}}.tsv and manifest.json"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
