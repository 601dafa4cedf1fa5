"""RNN encoder–decoder of Cho et al. 2014 (no attention) on ``reverse``.

GRU encoder–decoder, the whole source squeezed into one context vector c;
sequences of 1–10 symbols from a vocabulary of 10, hidden 128, maxout readout
(Cho et al. 2014, eq. 12), Adam 3e-3 with warm-up and cosine decay, 3,000 steps.

Results: docs/models.md, "Recurrent encoder–decoders". At lengths up to 30
this model fails where ``rnnsearch`` succeeds: ``configs/bottleneck.py``.

``get_config("tiny")``: a few-second version for tests.
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("reverse", 10, steps=3000, every=1000)
  config.model.update(name="rnn_encdec", embed_dim=32, hidden_size=128, readout="maxout")
  return common.apply_mode(config, arg, __file__, tiny=common.tiny_synthetic)
