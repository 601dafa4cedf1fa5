r"""Compare models on one split: BLEU/chrF with 95% intervals and p-values.

  python -m experiments.compare --workdirs A B [C ...] [--split test] [--beam 4] \
      [--step best] [--out DIR] [--length_buckets 10,20,30]

Each argument of --workdirs is one model; comma-separated workdirs are seeds
of one model (``--workdirs A1,A2,A3 B1,B2,B3``). Prints BLEU and chrF per
model, overall and per source-length bucket, with 95% bootstrap intervals and
the paired-bootstrap p-value against the first model (sacrebleu's), and
writes DIR/compare.md, DIR/compare.csv and DIR/compare_by_length.png
(default DIR: FIRST_WORKDIR/compare). Each workdir's split is decoded, or its
eval/ outputs reused when they are for the same step, split and decoding.
"""

from absl import flags

from experiments import cli

_WORKDIRS = flags.DEFINE_list(
  "workdirs", None, "Workdirs, one per model; seeds of a model joined by commas."
)
_OUT = flags.DEFINE_string("out", None, "Output directory; default: FIRST_WORKDIR/compare.")
_BUCKETS = flags.DEFINE_string(
  "length_buckets",
  None,
  "Source-length bucket "
  "edges, e.g. '10,20,30'; default: the first run's "
  "eval.length_buckets (or automatic).",
)
_DECODING = cli.define_decoding_flags(whose="each run's")
flags.mark_flags_as_required(["workdirs"])


def main(argv):
  # absl reads "--workdirs A1,A2 B C1,C2" as the list flag [A1, A2] and the
  # positional arguments B, C1,C2: each is one model, commas join its seeds.
  groups = [list(_WORKDIRS.value)] + [[w for w in a.split(",") if w] for a in argv[1:]]
  from attention_jax import compare

  with cli.errors_as_one_line():
    result = compare.compare_workdirs(
      groups,
      _DECODING.split.value,
      beam_size=_DECODING.beam.value,
      length_penalty=_DECODING.length_penalty.value,
      step=cli.parse_step(_DECODING.step.value),
      out=_OUT.value,
      length_buckets=_BUCKETS.value,
      on_markdown=lambda table: print(table, flush=True),  # before any file is written
    )
  print("wrote " + ", ".join(result["paths"].values()))


if __name__ == "__main__":
  cli.run(main)
