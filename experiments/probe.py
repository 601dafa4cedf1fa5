r"""Linear probes of a trained recurrent encoder–decoder: which source tokens
its context vector and its decoder states still hold.

  python -m experiments.probe --workdir W [--split test] [--examples_per_length 200] \
      [--decoder_lengths 10,20,30] [--seed 0] [--step best]

Fits softmax-regression probes (optax) on frozen states of fresh held-out
sources — the decoder's initial state (the context vector c; an LSTM's h and
cell c apart) and the decoder state after each output step, teacher-forced —
for the trained model and, as a control, the same model at initialization.
Writes W/probe/: initial_state.csv, decoder_states.csv, probe.json,
initial_state.png (accuracy against source position, a line per length) and
decoder_states.png (decoder step × source position). Models: rnn_encdec,
seq2seq_lstm, rnnsearch, luong; synthetic tasks.
"""

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_SPLIT = flags.DEFINE_string("split", "test", "Held-out split the sources come from: eval | test.")
_PER_LENGTH = flags.DEFINE_integer(
  "examples_per_length", 200, "Distinct sources per source length (80% fit, 20% score)."
)
_DECODER = flags.DEFINE_list(
  "decoder_lengths",
  None,
  "Source lengths of the "
  "decoder-state maps; default: the longest and about "
  "a third and two thirds of it.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the probe data and its split.")
_STEPS = flags.DEFINE_integer("probe_steps", 200, "Adam steps per probe.")
_STEP = flags.DEFINE_string(
  "step", None, "Checkpoint step: a number, or 'best' (checkpoint.best_metric); default: latest."
)
flags.mark_flags_as_required(["workdir"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  decoder = None
  if _DECODER.value is not None:
    try:
      decoder = [int(v) for v in _DECODER.value]
    except ValueError:
      cli.fail(
        f"--decoder_lengths {','.join(_DECODER.value)}: expected "
        "comma-separated integers, e.g. 10,20,30"
      )
  if _STEPS.value < 1:
    cli.fail(f"--probe_steps {_STEPS.value}: must be >= 1")
  step = cli.parse_step(_STEP.value)
  from attention_jax import probe

  with cli.errors_as_one_line():
    summary = probe.probe_workdir(
      _WORKDIR.value,
      _SPLIT.value,
      per_length=_PER_LENGTH.value,
      decoder_lengths=decoder,
      seed=_SEED.value,
      steps=_STEPS.value,
      step=step,
    )
  print(probe.format_summary(summary))


if __name__ == "__main__":
  cli.run(main)
