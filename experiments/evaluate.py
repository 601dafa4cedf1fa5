r"""Evaluate a trained workdir on a split, overall and by source length.

  python -m experiments.evaluate --workdir /tmp/q [--split test] [--beam 4] [--step best]

Writes DIR/eval/SPLIT.json (overall + by source-length bucket, 95% bootstrap
intervals, sacrebleu signatures), DIR/eval/SPLIT_by_length.csv,
DIR/eval/SPLIT_by_length.png, and the scored text: DIR/eval/SPLIT.hyp.txt,
DIR/eval/SPLIT.ref.txt (``sacrebleu SPLIT.ref.txt -i SPLIT.hyp.txt`` prints the
same BLEU) and DIR/eval/SPLIT_examples.jsonl. ``--step best``: the checkpoint
with the best dev BLEU.
"""

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate: eval | test.")
_BEAM = flags.DEFINE_integer("beam", None, "Beam size (1 = greedy); default: "
                             "the run's eval.beam_size.")
_ALPHA = flags.DEFINE_float("length_penalty", None, "Length penalty alpha; "
                            "default: the run's eval.length_penalty.")
_STEP = flags.DEFINE_string("step", None, "Checkpoint step: a number, or 'best' "
                            "(the best dev BLEU); default: latest.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import evaluation
  step = cli.parse_step(_STEP.value)
  with cli.errors_as_one_line():
    rep, paths = evaluation.evaluate_workdir(
        _WORKDIR.value, _SPLIT.value, beam_size=_BEAM.value,
        length_penalty=_ALPHA.value, step=step)
  print(evaluation.format_report(rep))
  print("wrote " + ", ".join(paths.values()))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
