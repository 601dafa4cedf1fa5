"""``reorder``: an English-like grammar translated into a German-like word order.

Attention earns its keep when words move over long distances (Bahdanau et al. 2014,
§5.2.2, Fig. 3: English–French aligns mostly monotonically, English–German does not);
this task makes the distance a knob. Each sentence is drawn as a tree and realized twice:
German's verb-second main clauses, verb-final subordinate and relative clauses, the verb
cluster reversed. :func:`generate` also returns the alignment, a permutation of the
content words.
Documented in docs/data.md#reorder-where-attention-earns-its-keep.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import numpy as np

# (English, German, gender) — animate nouns: subjects, objects.
_ANIMATE = [
  ("dog", "Hund", "m"),
  ("cat", "Katze", "f"),
  ("bird", "Vogel", "m"),
  ("horse", "Pferd", "n"),
  ("mouse", "Maus", "f"),
  ("child", "Kind", "n"),
  ("man", "Mann", "m"),
  ("woman", "Frau", "f"),
  ("farmer", "Bauer", "m"),
  ("teacher", "Lehrer", "m"),
  ("fox", "Fuchs", "m"),
  ("goat", "Ziege", "f"),
  ("sheep", "Schaf", "n"),
  ("baker", "Bäcker", "m"),
  ("girl", "Mädchen", "n"),
  ("owl", "Eule", "f"),
]
# Places: objects of prepositions.
_PLACES = [
  ("garden", "Garten", "m"),
  ("house", "Haus", "n"),
  ("street", "Straße", "f"),
  ("forest", "Wald", "m"),
  ("river", "Fluss", "m"),
  ("field", "Feld", "n"),
  ("city", "Stadt", "f"),
  ("bridge", "Brücke", "f"),
]
# (English base, past, participle; German infinitive, past, participle).
_TRANSITIVE = [
  ("chase", "chased", "chased", "jagen", "jagte", "gejagt"),
  ("find", "found", "found", "finden", "fand", "gefunden"),
  ("catch", "caught", "caught", "fangen", "fing", "gefangen"),
  ("feed", "fed", "fed", "füttern", "fütterte", "gefüttert"),
  ("wash", "washed", "washed", "waschen", "wusch", "gewaschen"),
  ("visit", "visited", "visited", "besuchen", "besuchte", "besucht"),
  ("greet", "greeted", "greeted", "grüßen", "grüßte", "gegrüßt"),
  ("bite", "bit", "bitten", "beißen", "biss", "gebissen"),
]
# Perception verbs take a verb complement (accusative with infinitive).
_PERCEPTION = [
  ("see", "saw", "seen", "sehen", "sah", "gesehen"),
  ("hear", "heard", "heard", "hören", "hörte", "gehört"),
]
# (English gerund, German infinitive): complements of perception verbs.
_MOTION = [
  ("running", "rennen"),
  ("flying", "fliegen"),
  ("walking", "laufen"),
  ("swimming", "schwimmen"),
  ("jumping", "springen"),
  ("singing", "singen"),
]
# (English, German, case) — the preposition assigns the case.
_PREPS = [
  ("through", "durch", "acc"),
  ("across", "über", "acc"),
  ("behind", "hinter", "dat"),
  ("under", "unter", "dat"),
  ("with", "mit", "dat"),
  ("around", "um", "acc"),
]
# Modals: English finite, base (after a modal), participle (after "have"),
# index of the aligned word in those phrases; German infinitive, past.
_MODALS = [
  (("must",), ("have", "to"), ("had", "to"), "müssen", "musste"),
  (("could",), ("be", "able", "to"), ("been", "able", "to"), "können", "konnte"),
  (("wanted", "to"), ("want", "to"), ("wanted", "to"), "wollen", "wollte"),
  (
    ("was", "allowed", "to"),
    ("be", "allowed", "to"),
    ("been", "allowed", "to"),
    "dürfen",
    "durfte",
  ),
]
_MODAL_HEAD = {
  "must": 0,
  "have": 0,
  "had": 0,
  "could": 0,
  "able": 1,
  "be": 1,
  "been": 1,
  "wanted": 0,
  "want": 0,
  "allowed": 1,
  "was": 1,
}
_ARTICLE = {
  ("nom", "m"): "der",
  ("nom", "f"): "die",
  ("nom", "n"): "das",
  ("acc", "m"): "den",
  ("acc", "f"): "die",
  ("acc", "n"): "das",
  ("dat", "m"): "dem",
  ("dat", "f"): "der",
  ("dat", "n"): "dem",
}
_FUNCTION_EN = ["the", "who", ",", ".", "and", "because", "to", "be", "been", "was", "have", "had"]
_FUNCTION_DE = ["der", "die", "das", "den", "dem", ",", ".", "und", "weil"]
_SYLLABLES = ["ba", "ko", "ri", "mu", "te", "la", "zo", "ne", "pi", "du", "ga", "se"]


def _pseudo(i: int, salt: int) -> str:
  """A pronounceable pseudo-word, distinct for each (i, salt)."""
  n = i * 7 + salt
  s = ""
  for _ in range(3):
    s += _SYLLABLES[n % len(_SYLLABLES)]
    n //= len(_SYLLABLES)
  return s + str(i)


@dataclasses.dataclass(frozen=True)
class Lexicon:
  animate: list
  places: list
  transitive: list
  perception: list
  motion: list

  @classmethod
  def make(cls, vocab_size: int) -> Lexicon:
    """``vocab_size`` animate nouns; places, verbs and complements scale."""

    def take(base, n, make):
      return list(base[:n]) + [make(i) for i in range(len(base), n)]

    genders = "mfn"
    animate = take(
      _ANIMATE, vocab_size, lambda i: (_pseudo(i, 1), _pseudo(i, 1).capitalize(), genders[i % 3])
    )
    places = take(
      _PLACES,
      max(2, vocab_size // 2),
      lambda i: (_pseudo(i, 2), _pseudo(i, 2).capitalize(), genders[i % 3]),
    )

    def verb(i, salt):
      w = _pseudo(i, salt)
      return (w, w + "ed", w + "ed", w + "en", w + "te", "ge" + w + "t")

    transitive = take(_TRANSITIVE, max(2, vocab_size // 2), lambda i: verb(i, 3))
    motion = take(
      _MOTION, max(2, vocab_size // 3), lambda i: (_pseudo(i, 4) + "ing", _pseudo(i, 4) + "en")
    )
    return cls(animate, places, transitive, list(_PERCEPTION), motion)

  def source_tokens(self) -> list[str]:
    out = list(_FUNCTION_EN)
    out += [e for e, _, _ in self.animate + self.places]
    for v in self.transitive + self.perception:
      out += v[:3]
    out += [m for m, _ in self.motion]
    out += [p for p, _, _ in _PREPS]
    for fin, base, part, _, _ in _MODALS:
      out += [*fin, *base, *part]
    return list(dict.fromkeys(out))

  def target_tokens(self) -> list[str]:
    out = list(_FUNCTION_DE)
    out += [g for _, g, _ in self.animate + self.places]
    for v in self.transitive + self.perception:
      out += v[3:]
    out += [g for _, g in self.motion]
    out += [g for _, g, _ in _PREPS]
    for *_, inf, past in _MODALS:
      out += [inf, past]
    out += ["haben", "hatte"]
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------------
# Trees


@dataclasses.dataclass
class NP:
  noun: tuple  # (en, de, gender)
  item: int  # alignment id of the noun
  rel: Clause | None = None  # relative clause on this noun


@dataclasses.dataclass
class Verb:
  kind: str  # "modal" | "perf" | "lex"
  entry: tuple
  item: int
  perception: bool = False


@dataclasses.dataclass
class Clause:
  kind: str  # "main" | "sub" | "rel"
  subject: NP | None  # None in a relative clause (the pronoun)
  chain: list  # [Verb] in English order, finite first
  obj: NP
  complement: tuple | None  # (motion entry, item) after a perception verb
  pp: tuple | None  # (prep entry, item, NP)


class _Items:
  def __init__(self):
    self.n = 0

  def __call__(self) -> int:
    self.n += 1
    return self.n - 1


def _noun_phrase(rng, lex, items, depth, p_rel):
  noun = lex.animate[rng.randrange(len(lex.animate))]
  np_ = NP(noun, items())
  if depth > 0 and rng.random() < p_rel:
    np_.rel = _clause(rng, lex, items, "rel", depth - 1, p_rel)
  return np_


def _clause(rng, lex, items, kind, depth, p_rel) -> Clause:
  subject = None if kind == "rel" else _noun_phrase(rng, lex, items, depth, p_rel)
  chain = []
  n_modals = rng.choice([0, 0, 1, 1, 2])
  perf = rng.random() < 0.35
  modals = [_MODALS[j] for j in rng.sample(range(len(_MODALS)), n_modals)]
  if modals:
    chain.append(Verb("modal", modals[0], items()))
  if perf:
    chain.append(Verb("perf", (), items()))
  for m in modals[1:]:
    chain.append(Verb("modal", m, items()))
  perception = rng.random() < 0.35
  pool = lex.perception if perception else lex.transitive
  chain.append(Verb("lex", pool[rng.randrange(len(pool))], items(), perception))
  obj = _noun_phrase(rng, lex, items, depth, p_rel)
  complement = None
  if perception:
    complement = (lex.motion[rng.randrange(len(lex.motion))], items())
  pp = None
  if rng.random() < 0.4:
    prep = _PREPS[rng.randrange(len(_PREPS))]
    place = lex.places[rng.randrange(len(lex.places))]
    pp = (prep, items(), NP(place, items()))
  return Clause(kind, subject, chain, obj, complement, pp)


def sample_tree(
  rng: random.Random, lex: Lexicon, depth: int, clauses: int, p_rel: float = 0.5
) -> list:
  """[(connector | None, Clause)] with 1..clauses top-level clauses."""
  items = _Items()
  n = rng.randint(1, clauses)
  out = [(None, _clause(rng, lex, items, "main", depth, p_rel))]
  for _ in range(n - 1):
    conj = "and" if rng.random() < 0.5 else "because"
    out.append((conj, _clause(rng, lex, items, "main" if conj == "and" else "sub", depth, p_rel)))
  return out


# ---------------------------------------------------------------------------
# Realization: lists of (token, item or None)


def _english_verb(v: Verb, form: str) -> list:
  if v.kind == "perf":
    return [("had" if form == "finite" else "have", v.item)]
  if v.kind == "modal":
    fin, base, part, _, _ = v.entry
    words = {"finite": fin, "base": base, "participle": part}[form]
    head = _MODAL_HEAD[words[0]] if len(words) > 1 else 0
    return [(w, v.item if k == head else None) for k, w in enumerate(words)]
  base, past, part = v.entry[:3]
  return [({"finite": past, "base": base, "participle": part}[form], v.item)]


def _en_noun_phrase(np_: NP) -> list:
  out = [("the", None), (np_.noun[0], np_.item)]
  if np_.rel is not None:
    out += [(",", None), ("who", None)] + _en_clause(np_.rel) + [(",", None)]
  return out


def _en_clause(c: Clause) -> list:
  out = [] if c.subject is None else _en_noun_phrase(c.subject)
  prev = None
  for v in c.chain:
    form = "finite" if prev is None else "participle" if prev.kind == "perf" else "base"
    out += _english_verb(v, form)
    prev = v
  out += _en_noun_phrase(c.obj)
  if c.complement is not None:
    out.append((c.complement[0][0], c.complement[1]))
  if c.pp is not None:
    prep, item, place = c.pp
    out += [(prep[0], item), ("the", None), (place.noun[0], place.item)]
  return out


def _de_noun_phrase(np_: NP, case: str) -> list:
  out = [(_ARTICLE[case, np_.noun[2]], None), (np_.noun[1], np_.item)]
  if np_.rel is not None:
    out += [(",", None), (_ARTICLE["nom", np_.noun[2]], None)]
    out += _de_clause(np_.rel) + [(",", None)]
  return out


def _de_cluster(c: Clause) -> list:
  """The verb cluster in English order, each as (token, item, kind, ersatz)."""
  verbs = []
  prev, prev_ersatz = None, False
  for i, v in enumerate(c.chain):
    nxt = c.chain[i + 1] if i + 1 < len(c.chain) else None
    # A perfect governing a modal or a perception verb with a complement
    # takes the infinitive instead of the participle (Ersatzinfinitiv).
    ersatz = (
      v.kind == "perf"
      and nxt is not None
      and (nxt.kind == "modal" or (nxt.perception and c.complement is not None))
    )
    if prev is None:
      form = "finite"
    elif prev.kind == "perf" and not prev_ersatz:
      form = "participle"
    else:
      form = "infinitive"
    if v.kind == "perf":
      word = "hatte" if form == "finite" else "haben"
    elif v.kind == "modal":
      word = v.entry[4] if form == "finite" else v.entry[3]
    else:
      word = {"finite": v.entry[4], "infinitive": v.entry[3], "participle": v.entry[5]}[form]
    verbs.append((word, v.item, v.kind, ersatz))
    prev, prev_ersatz = v, ersatz
  if c.complement is not None:
    verbs.append((c.complement[0][1], c.complement[1], "lex", False))
  return verbs


def _final(verbs: list) -> list:
  """Reverses a (part of a) verb cluster; an Ersatzinfinitiv auxiliary leads."""
  rev = verbs[::-1]
  lead = [v for v in rev if v[2] == "perf" and v[3]]
  rest = [v for v in rev if not (v[2] == "perf" and v[3])]
  return [(w, item) for w, item, _, _ in lead + rest]


def _de_clause(c: Clause) -> list:
  verbs = _de_cluster(c)
  middle = _de_noun_phrase(c.obj, "acc")
  if c.pp is not None:
    prep, item, place = c.pp
    middle += [(prep[1], item)] + _de_noun_phrase(place, prep[2])
  if c.kind == "main":  # verb-second
    finite = verbs[0]
    return _de_noun_phrase(c.subject, "nom") + [(finite[0], finite[1])] + middle + _final(verbs[1:])
  subject = [] if c.subject is None else _de_noun_phrase(c.subject, "nom")
  return subject + middle + _final(verbs)  # verb-final


def _tidy(tokens: list) -> list:
  """Collapses repeated commas and drops a comma before the full stop."""
  out = []
  for t in tokens:
    if t[0] in (",", ".") and out and out[-1][0] == ",":
      out.pop()
    out.append(t)
  return out


def realize(tree: list) -> tuple[list, list]:
  """(English [(token, item)], German [(token, item)]) of a tree."""
  en, de = [], []
  for conj, c in tree:
    if conj == "and":
      en.append(("and", None))
      de.append(("und", None))
    elif conj == "because":
      en += [(",", None), ("because", None)]
      de += [(",", None), ("weil", None)]
    en += _en_clause(c)
    de += _de_clause(c)
  en.append((".", None))
  de.append((".", None))
  return _tidy(en), _tidy(de)


@dataclasses.dataclass
class Pair:
  source: list[str]
  target: list[str]
  alignment: list[tuple[int, int]]  # (source position, target position)


def target_alignment(pair: Pair) -> list[int]:
  """Per target position, the source position of its aligned content word,
  or −1 for a function word (article, relative pronoun, comma, conjunction,
  full stop), which has no unique source."""
  out = [-1] * len(pair.target)
  for i, j in pair.alignment:
    out[j] = i
  return out


def _pair(tree) -> Pair:
  en, de = realize(tree)
  src_pos = {item: i for i, (_, item) in enumerate(en) if item is not None}
  tgt_pos = {item: j for j, (_, item) in enumerate(de) if item is not None}
  alignment = sorted((src_pos[k], tgt_pos[k]) for k in src_pos)
  return Pair([t for t, _ in en], [t for t, _ in de], alignment)


def generate(
  rng: np.random.Generator,
  lex: Lexicon,
  depth: int,
  clauses: int,
  min_length: int,
  max_length: int,
  tries: int = 2000,
) -> Pair:
  """One pair whose source has ``min_length..max_length`` tokens (and whose
  target, which is a few commas longer at most, no more than ``max_length``).

  Sentences are drawn until one fits (rejection sampling), with Python's
  ``random`` seeded from ``rng`` (numpy's scalar draws are 10× slower here).
  """
  return fitting_pair(
    random.Random(int(rng.integers(2**63))), lex, depth, clauses, min_length, max_length, tries
  )


def fitting_pair(
  rng: random.Random,
  lex: Lexicon,
  depth: int,
  clauses: int,
  min_length: int,
  max_length: int,
  tries: int = 2000,
) -> Pair:
  """:func:`generate` drawing from Python's ``random`` directly (many pairs
  from one generator: no re-seeding per pair)."""
  for _ in range(tries):
    pair = _pair(sample_tree(rng, lex, depth, clauses))
    if min_length <= len(pair.source) <= max_length and len(pair.target) <= max_length:
      return pair
  raise ValueError(
    f"reorder: no sentence of {min_length}..{max_length} tokens in {tries} "
    f"tries with data.reorder_depth={depth}, data.reorder_clauses={clauses} "
    "(the shortest sentence has 6 tokens; raise the depth or clauses for "
    "long ones)"
  )


def seed_example(lex: Lexicon | None = None) -> tuple[Pair, list[str]]:
  """The issue's example, built as a tree and realized by this grammar.

  "The dog, who must have been able to see the cat running through the
  garden." Returns the pair and the English gloss of the German-like target.
  """
  lex = lex or Lexicon.make(len(_ANIMATE))
  items = _Items()
  must, could = _MODALS[0], _MODALS[1]
  rel = Clause(
    "rel",
    None,
    [
      Verb("modal", must, items()),
      Verb("perf", (), items()),
      Verb("modal", could, items()),
      Verb("lex", _PERCEPTION[0], items(), perception=True),
    ],
    NP(_ANIMATE[1], items()),
    (_MOTION[0], items()),
    (_PREPS[0], items(), NP(_PLACES[0], items())),
  )
  subject = NP(_ANIMATE[0], items(), rel)
  en = _tidy(_en_noun_phrase(subject) + [(".", None)])
  de = _tidy(_de_noun_phrase(subject, "nom") + [(".", None)])
  src_pos = {item: i for i, (_, item) in enumerate(en) if item is not None}
  tgt_pos = {item: j for j, (_, item) in enumerate(de) if item is not None}
  pair = Pair(
    [t for t, _ in en], [t for t, _ in de], sorted((src_pos[k], tgt_pos[k]) for k in src_pos)
  )
  return pair, gloss(pair)


def gloss(pair: Pair) -> list[str]:
  """The target word by word in English: each content word as its aligned
  source word; articles "the", relative pronouns "who"."""
  back = {j: i for i, j in pair.alignment}
  out = []
  for j, t in enumerate(pair.target):
    if j in back:
      out.append(pair.source[back[j]])
    elif t in ("der", "die", "das", "den", "dem"):
      out.append("who" if j > 0 and pair.target[j - 1] == "," else "the")
    else:
      out.append({"und": "and", "weil": "because"}.get(t, t))
  return out


def sentence(tokens: Sequence[str]) -> str:
  """Tokens as a sentence: joined, no space before punctuation, capitalized."""
  text = " ".join(tokens).replace(" ,", ",").replace(" .", ".")
  return text[:1].upper() + text[1:]


def _main(argv: Sequence[str]) -> None:
  """``python -m attention_jax.data.reorder [N [DEPTH [CLAUSES]]]``: the seed
  example, then N generated pairs with their glosses."""
  n, depth, clauses = ([int(a) for a in argv] + [3, 2, 2][len(argv) :])[:3]
  pair, seed_gloss = seed_example()
  print("seed example")
  for label, words in (("en", pair.source), ("de", pair.target), ("gloss", seed_gloss)):
    print(f"  {label:6s}{sentence(words)}")
  lex = Lexicon.make(10)
  rng = np.random.default_rng(0)
  for k in range(n):
    p = generate(rng, lex, depth, clauses, 6, 60)
    print(f"sample {k + 1} (depth {depth}, clauses {clauses})")
    for label, words in (("en", p.source), ("de", p.target), ("gloss", gloss(p))):
      print(f"  {label:6s}{sentence(words)}")


if __name__ == "__main__":
  import sys

  _main(sys.argv[1:])
