"""RNNsearch of Bahdanau et al. 2014 on ``reverse`` of sequences up to length 30.

Bidirectional GRU encoder, additive attention, GRU decoder fed the context
vector of each step, maxout readout; hidden 64, vocabulary 10, lengths 1–30
(where the encoder–decoder without attention fails: ``configs/bottleneck.py``),
Adam 3e-3 with 200 warm-up steps then cosine to 5%, clip 1.0, 1,500 steps.

Measured (2-core CPU dev machine shared by ~8 engineers, load average ~20):
``python -m experiments.run --config configs/rnnsearch.py --workdir W`` took
679 s wall in a first run and 573 s in a second (load ~25), which used 151 s
of CPU time in all (user 101.7 s + sys 49.4 s); eval on 1,000 held-out
sequences of length 1–30: sequence_accuracy 0.928 at step 500, 0.999 at 1,000
and **1.000** (token_accuracy 1.000) at 1,500, in both runs.

``get_config("tiny")``: a few-second version for tests.
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("reverse", 30, steps=1500, every=500)
  config.model.update(name="rnnsearch", embed_dim=32, hidden_size=64, readout="maxout")
  return common.apply_mode(config, arg, __file__, tiny=common.tiny_synthetic)
