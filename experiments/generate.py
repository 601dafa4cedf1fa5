r"""Sample a continuation from a trained decoder-only LM (``model.name = "gpt"``).

  python -m experiments.generate --workdir /tmp/gpt --prompt "The dog" \
      [--max_new_tokens N] [--temperature 0.8] [--top_k 0] [--seed 0]

Prints the prompt followed by the sampled continuation. Sampling runs through
the KV cache inside one compiled ``lax.scan`` (attention_jax/models/gpt.py).
"""

from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained gpt run.")
_PROMPT = flags.DEFINE_string("prompt", None, "Text to continue.")
_MAX_NEW = flags.DEFINE_integer(
  "max_new_tokens",
  None,
  "Characters to sample; default: 200, or fewer if the model's position table "
  "(model.max_positions) ends sooner after the prompt.",
)
_TEMPERATURE = flags.DEFINE_float("temperature", 0.8, "Softmax temperature; 0 = greedy.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Sample among the k likeliest; 0 = all.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.mark_flags_as_required(["workdir", "prompt"])


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  from attention_jax import generate

  with cli.errors_as_one_line():
    try:
      text = generate.generate_text(
        _WORKDIR.value,
        _PROMPT.value,
        max_new_tokens=_MAX_NEW.value,
        temperature=_TEMPERATURE.value,
        top_k=_TOP_K.value,
        seed=_SEED.value,
      )
    except ValueError as e:
      cli.fail(str(e))
  print(_PROMPT.value + text, flush=True)


if __name__ == "__main__":
  cli.run(main)
