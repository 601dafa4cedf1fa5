"""Same config and seed -> the same losses: a few Transformer and GPT train
steps against values recorded from the code before the CPU speed-ups of the
train step (custom feed-forward weight gradient, two-reduction argmax).

The recorded losses come from commit ac5a227 (before those changes), at tiny
shapes, float32, on the CPU; a speed change may move them by float rounding
only (the summation order of a matmul), far below 1e-5.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attention_jax import config as config_lib
from attention_jax import objectives
from attention_jax import step as step_lib

V, B, T = 20, 4, 8

# case -> (model, objective, overrides, losses of steps 1..4)
RECORDED = {
  "transformer": (
    "transformer",
    "seq2seq",
    {},
    [3.633279800415039, 3.4313364028930664, 3.1430227756500244, 3.242013692855835],
  ),
  "transformer_dropout_ls": (
    "transformer",
    "seq2seq",
    {"model.dropout": 0.1, "model.attention_dropout": 0.1, "train.label_smoothing": 0.1},
    [3.7705299854278564, 3.4507558345794678, 3.2368149757385254, 3.395132064819336],
  ),
  "gpt_lm_ls": (
    "gpt",
    "lm",
    {"train.label_smoothing": 0.1},
    [3.6778032779693604, 3.685269594192505, 3.606443166732788, 3.615342855453491],
  ),
}


def _config(name, overrides):
  c = config_lib.base_config()
  c.model.name = name
  c.model.num_layers, c.model.hidden_size, c.model.num_heads = 2, 32, 4
  c.data.max_length, c.train.batch_size, c.train.warmup_steps = T, B, 0
  for key, value in overrides.items():
    section, leaf = key.split(".")
    c[section][leaf] = value
  return c


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_losses_match_the_recorded_ones(case):
  name, objective, overrides, want = RECORDED[case]
  c = _config(name, overrides)
  graphdef, state, tx, schedule = step_lib.create_state(c, V, V)
  step = jax.jit(step_lib.make_train_step(graphdef, tx, schedule, c, objectives.get(objective)))
  rng = np.random.default_rng(0)

  def tokens():  # PAD (0) included: masks and the loss's token count are exercised
    return jnp.asarray(rng.integers(0, V, size=(B, T)), jnp.int32)

  got = []
  for _ in range(len(want)):
    if objective == "lm":
      batch = {"inputs": tokens(), "targets": tokens()}
    else:
      batch = {"src": tokens(), "tgt_in": tokens(), "tgt_out": tokens()}
    state, m = step(state, batch)
    got.append(float(m["loss"]))
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)
