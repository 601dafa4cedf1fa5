"""RNNsearch of Bahdanau et al. 2014 on ``reverse`` of sequences up to length 30.

Bidirectional GRU encoder, additive attention, GRU decoder fed the context
vector of each step, maxout readout; hidden 64, vocabulary 10, lengths 1–30
(where the encoder–decoder without attention fails: ``configs/bottleneck.py``),
Adam 3e-3 with 200 warm-up steps then cosine to 5%, clip 1.0, 1,500 steps.

Measured (2-core CPU dev machine, 30 Nov 2026, shared with two other processes):
``python -m experiments.run --config configs/rnnsearch.py --workdir W`` took
223 s wall; eval on 1,000 sequences of length 1–30 held out by hash:
sequence_accuracy 0.745 at step 500, 1.000 at 1,000 and **1.000**
(token_accuracy 1.000) at 1,500.

``get_config("tiny")``: a few-second version for tests.
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("reverse", 30, steps=1500, every=500)
  config.model.update(name="rnnsearch", embed_dim=32, hidden_size=64, readout="maxout")
  return common.apply_mode(config, arg, __file__, tiny=common.tiny_synthetic)
