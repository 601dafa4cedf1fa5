"""Cho et al. 2014, "Learning Phrase Representations using RNN Encoder–Decoder
for Statistical Machine Translation" (arXiv:1406.1078): the RNN
encoder–decoder with gated recurrent units, WMT'14 English→French.

  python -m experiments.run --config configs/papers/cho2014.py --workdir W
  python -m experiments.run --config configs/papers/cho2014.py:tiny --workdir W

The paper scored phrase pairs inside a phrase-based system; here the same
network is trained and evaluated as a stand-alone translator (as Bahdanau et
al. 2014 did with "RNNencdec"). Needs ``wmt14_translate/fr-en`` prepared in
the TFDS data dir (network access once). ``tiny``: synthetic ``reverse``, a
few steps, for tests.
"""

from configs import common


def get_config(arg=None):
  _, tiny = common.paper_arg(arg, __file__)
  # Data: Section 4.1, WMT'14 English→French; 15,000 most frequent words per
  # side. The length limit is not stated for the RNN (phrase pairs); a choice.
  c = common.wmt14("fr")
  c.data.update(max_vocab=15000, max_length=50)
  # Model: Section 2.2 (encoder–decoder), 2.3 (the gated hidden unit, eqs.
  # 5-8); gru_reset_after=False is eq. 7: the reset gate before the recurrent
  # matmul. Sizes as we read Appendix A.1: 1000 hidden units; rank-100 word
  # embedding matrices; a maxout output layer (eq. 12) of 500 units, each
  # pooling 2.
  c.model.update(
    name="rnn_encdec",
    cell="gru",
    gru_reset_after=False,
    hidden_size=1000,
    embed_dim=100,
    readout="maxout",
    readout_dim=500,
  )
  # Training: Appendix A.1, Adadelta (ρ = 0.95, ε = 1e-6), minibatches of 64
  # phrase pairs. The number of updates is not given (about three days of
  # training); 300k is our choice. Clipping is not stated in Cho et al.; 1.0
  # as Bahdanau et al. B.2.
  c.train.update(
    optimizer="adadelta",
    learning_rate=1.0,
    schedule="constant",
    warmup_steps=0,
    batch_size=64,
    steps=300_000,
    grad_clip_norm=1.0,
  )
  # Decoding: not stated for stand-alone decoding; our choice.
  c.eval.update(batch_size=64, beam_size=10, max_length_a=1.5, max_length_b=10.0)
  return common.paper_tiny(c) if tiny else c
