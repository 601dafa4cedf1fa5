r"""Evaluate a trained workdir on a split, overall and by source length.

  python -m experiments.evaluate --workdir /tmp/q [--split test] [--beam 4] [--step best]

Writes DIR/eval/SPLIT.json (overall + by source-length bucket, 95% bootstrap
intervals, sacrebleu signatures), DIR/eval/SPLIT_by_length.csv,
DIR/eval/SPLIT_by_length.png, and the scored text: DIR/eval/SPLIT.hyp.txt,
DIR/eval/SPLIT.ref.txt (``sacrebleu SPLIT.ref.txt -i SPLIT.hyp.txt`` prints the
same BLEU) and DIR/eval/SPLIT_examples.jsonl. ``--step best``: the checkpoint
with the best dev BLEU (``checkpoint.best_metric``).
"""

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_DECODING = cli.define_decoding_flags()
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import evaluation

  step = cli.parse_step(_DECODING.step.value)
  with cli.errors_as_one_line():  # the numbers are printed before any file is written
    _, paths = evaluation.evaluate_workdir(
      _WORKDIR.value,
      _DECODING.split.value,
      beam_size=_DECODING.beam.value,
      length_penalty=_DECODING.length_penalty.value,
      step=step,
      on_report=lambda rep: print(evaluation.format_report(rep), flush=True),
    )
  print("wrote " + ", ".join(paths.values()))


if __name__ == "__main__":
  cli.run(main)
