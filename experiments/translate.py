r"""Translate text with a trained workdir; optionally plot the attention.

  python -m experiments.translate --workdir /tmp/w --text "4 5 6" [--text ...] \
      [--file lines.txt] [--beam 4] [--step best] [--plot a.png]

Prints one translation per input line (stdout). On stderr: a warning for an
input longer than the longest training source (naming both lengths; real text
is cut to data.max_length tokens, as evaluation cuts it), and, for real-text
tokenizers, each input's <unk> count. A symbol outside a synthetic task's
vocabulary is an error naming it and the vocabulary. With --plot, writes the
alignment heatmap (source tokens across, output tokens down; where the task
knows the gold alignment of a typed source — copy, reverse, sort — its cells
are outlined in red); with several inputs the i-th (i >= 2) goes to a-i.png.
"""

import os
import sys

from absl import app, flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_TEXT = flags.DEFINE_multi_string("text", [], "Source text (repeatable).")
_FILE = flags.DEFINE_string("file", None, "File of source lines (UTF-8).")
_PLOT = flags.DEFINE_string("plot", None, "PNG path for the attention heatmap.")
_DECODING = cli.define_decoding_flags(split=False, length_penalty=False)
flags.mark_flags_as_required(["workdir"])


def plot_paths(path: str, n: int) -> list[str]:
  stem, ext = os.path.splitext(path)
  return [path] + [f"{stem}-{i}{ext or '.png'}" for i in range(2, n + 1)]


def report_inputs(results, can_unk: bool) -> None:
  """Warnings, and <unk> counts of each input that has some, on stderr."""
  for r in results:
    if r["warning"]:
      print(f"warning: {r['warning']}", file=sys.stderr)
  if not can_unk:
    return
  n_unk = 0
  for i, r in enumerate(results, 1):
    if r["unknown"]:
      n_unk += 1
      print(
        f"input {i}: {len(r['unknown'])} <unk> of {r['tokens']} source tokens: "
        + ", ".join(repr(u) for u in r["unknown"]),
        file=sys.stderr,
      )
  tokens = sum(len(r["unknown"]) for r in results)
  print(
    f"<unk>: {n_unk} of {len(results)} inputs have unknown source tokens "
    f"({tokens} of {sum(r['tokens'] for r in results)} tokens)",
    file=sys.stderr,
  )


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  texts = list(_TEXT.value)
  if _FILE.value:
    try:
      with open(_FILE.value, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")  # line ends: \n only, as the data reader
      texts += [line[:-1] if line.endswith("\r") else line for line in lines if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
      cli.fail(f"--file {_FILE.value}: {e.__class__.__name__}: {e}")
  if not texts:
    cli.fail('nothing to translate: give --text "..." or --file F')
  if _PLOT.value and not _PLOT.value.lower().endswith(".png"):
    cli.fail(f"--plot {_PLOT.value}: the heatmap is a PNG; end the name in .png")
  from attention_jax import evaluation, plots
  from attention_jax import workdir as workdir_lib

  with cli.errors_as_one_line():
    run = workdir_lib.load(_WORKDIR.value, cli.parse_step(_DECODING.step.value))
    config = run.config
    results = evaluation.translate(run.model, config, run.task, texts, _DECODING.beam.value)
  if _PLOT.value and results[0]["attention"] is None:
    cli.fail(f"model {config.model.name!r} has no attention weights to plot")
  for r in results:
    print(r["text"])
  report_inputs(results, hasattr(run.task, "unknown"))
  if _PLOT.value:
    for r, path in zip(results, plot_paths(_PLOT.value, len(results)), strict=True):
      plots.save_attention_heatmap(
        path,
        r["attention"],
        r["source"],
        r["output"],
        title=f"{config.model.name} on {config.data.task}",
        gold=r["gold"],
      )
      print(f"wrote {path}", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
