r"""Evaluate a trained workdir on a split, overall and by source length.

  python -m experiments.evaluate --workdir /tmp/q [--split test] [--beam 4]

Writes DIR/eval/SPLIT.json (overall + by source-length bucket),
DIR/eval/SPLIT_by_length.csv and DIR/eval/SPLIT_by_length.png.
"""

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate: eval | test.")
_BEAM = flags.DEFINE_integer("beam", None, "Beam size (1 = greedy); default: "
                             "the run's eval.beam_size.")
_ALPHA = flags.DEFINE_float("length_penalty", None, "Length penalty alpha; "
                            "default: the run's eval.length_penalty.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step; default: latest.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import evaluation
  try:
    rep, paths = evaluation.evaluate_workdir(
        _WORKDIR.value, _SPLIT.value, beam_size=_BEAM.value,
        length_penalty=_ALPHA.value, step=_STEP.value)
  except evaluation.EvalError as e:
    cli.fail(str(e))
  o = rep["overall"]
  print(f"{rep['split']} at step {rep['step']}: " + "  ".join(
      f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
      for k, v in o.items() if v is not None))
  for row in rep["by_length"]:
    bleu = "-" if row["bleu"] is None else f"{row['bleu']:.2f}"
    acc = "-" if row["sequence_accuracy"] is None else f"{row['sequence_accuracy']:.3f}"
    print(f"  length {row['bucket']:>7}: n={row['count']:<5d} bleu {bleu:>6}  "
          f"sequence_accuracy {acc}")
  print("wrote " + ", ".join(paths.values()))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
