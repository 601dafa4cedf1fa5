"""Side-by-side benchmark suites for ``python -m experiments.benchmark``.

Each suite module defines ``run(quick: bool) -> list[dict]``: one row per
(configuration, implementation) with ``median_ms`` and ``ratio`` against that
configuration's reference, all timed in this one process.
"""

SUITES = {
  # name -> module under attention_jax.benchmarks, imported on demand;
  # ``--suite all`` runs them in this order (the headline numbers first)
  "model": "model",  # train-step tokens/s and MFU per model
  "attention": "attention",  # attention core and layer vs torch SDPA
  "rnn": "rnn",  # LSTM/GRU layer fwd+bwd vs flax nnx.RNN and torch
}
