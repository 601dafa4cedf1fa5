r"""Translate text with a trained workdir; optionally plot the attention.

  python -m experiments.translate --workdir /tmp/w --text "4 5 6" [--text ...] \
      [--file lines.txt] [--beam 4] [--plot a.png]

Prints one translation per input line. With --plot, writes the alignment
heatmap (source tokens across, output tokens down); with several inputs the
i-th (i >= 2) goes to a-i.png.
"""

import os

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_TEXT = flags.DEFINE_multi_string("text", [], "Source text (repeatable).")
_FILE = flags.DEFINE_string("file", None, "File of source lines (UTF-8).")
_BEAM = flags.DEFINE_integer("beam", None, "Beam size (1 = greedy); default: "
                             "the run's eval.beam_size.")
_PLOT = flags.DEFINE_string("plot", None, "PNG path for the attention heatmap.")
flags.mark_flags_as_required(["workdir"])


def plot_paths(path: str, n: int) -> list[str]:
  stem, ext = os.path.splitext(path)
  return [path] + [f"{stem}-{i}{ext or '.png'}" for i in range(2, n + 1)]


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  texts = list(_TEXT.value)
  if _FILE.value:
    try:
      with open(_FILE.value, encoding="utf-8") as f:
        texts += [line.rstrip("\n") for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
      cli.fail(f"--file {_FILE.value}: {e.__class__.__name__}: {e}")
  if not texts:
    cli.fail("nothing to translate: give --text \"...\" or --file F")
  if _PLOT.value and not _PLOT.value.lower().endswith(".png"):
    cli.fail(f"--plot {_PLOT.value}: the heatmap is a PNG; end the name in .png")
  from attention_jax import evaluation, plots
  try:
    model, config, run = evaluation.load(_WORKDIR.value)
    results = evaluation.translate(model, config, run.task, texts, _BEAM.value)
  except evaluation.EvalError as e:
    cli.fail(str(e))
  if _PLOT.value and results[0]["attention"] is None:
    cli.fail(f"model {config.model.name!r} has no attention weights to plot")
  for r in results:
    print(r["text"])
  if _PLOT.value:
    for r, path in zip(results, plot_paths(_PLOT.value, len(results))):
      plots.save_attention_heatmap(
          path, r["attention"], r["source"], r["output"],
          title=f"{config.model.name} on {config.data.task}")
      print(f"wrote {path}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
