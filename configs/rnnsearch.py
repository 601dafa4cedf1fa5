"""RNNsearch of Bahdanau et al. 2014 on ``reverse`` of sequences up to length 30.

Bidirectional GRU encoder, additive attention, GRU decoder fed the context
vector of each step, maxout readout; hidden 64, vocabulary 10, lengths 1–30
(where the encoder–decoder without attention fails: ``configs/bottleneck.py``),
Adam 3e-3 with 200 warm-up steps then cosine to 5%, clip 1.0, 1,500 steps.

Results: docs/models.md, "Recurrent encoder–decoders".

``get_config("tiny")``: a few-second version for tests.
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("reverse", 30, steps=1500, every=500)
  config.model.update(name="rnnsearch", embed_dim=32, hidden_size=64, readout="maxout")
  return common.apply_mode(config, arg, __file__, tiny=common.tiny_synthetic)
