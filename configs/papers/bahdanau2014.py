"""Bahdanau, Cho & Bengio 2014, "Neural Machine Translation by Jointly
Learning to Align and Translate" (ICLR 2015): RNNsearch (bidirectional GRU
encoder + additive attention) and RNNencdec (Cho et al. 2014's encoder–decoder),
each trained on sentences of up to 30 or 50 words, WMT'14 English→French.

  python -m experiments.run --config configs/papers/bahdanau2014.py:rnnsearch50 --workdir W
  python -m experiments.run --config configs/papers/bahdanau2014.py:rnnencdec30,tiny --workdir W

ARG: one of ``rnnsearch30``, ``rnnsearch50`` (default), ``rnnencdec30``,
``rnnencdec50``, optionally ``,tiny`` (synthetic ``reverse``, a few steps).
Differences: the paper initializes recurrent matrices orthogonally and the
rest from N(0, 0.01²) (Appendix B.1); ours use the library's initializers.
"""

from configs import common

VARIANTS = ("rnnsearch30", "rnnsearch50", "rnnencdec30", "rnnencdec50")


def get_config(arg=None):
  variant, tiny = common.paper_arg(arg, __file__, VARIANTS)
  variant = variant or "rnnsearch50"
  # Data: Section 4.1, WMT'14 English→French; shortlists of the 30,000 most
  # frequent words per language; "-30"/"-50": trained on sentence pairs of up
  # to 30 / 50 words (Section 4.2).
  c = common.wmt14("fr")
  c.data.update(max_vocab=30_000, max_length=30 if variant.endswith("30") else 50)
  # Model: Section 3 and Appendix A. 1000 hidden units in the encoder (each
  # direction for RNNsearch) and decoder, 620-d word embeddings, a deep
  # output with a single maxout hidden layer of 500 units (A.2.2), alignment
  # model with n' = 1000 hidden units (A.1.2, eq. 6).
  name = "rnnsearch" if variant.startswith("rnnsearch") else "rnn_encdec"
  c.model.update(
    name=name, cell="gru", hidden_size=1000, embed_dim=620, readout="maxout", readout_dim=500
  )
  if name == "rnnsearch":  # RNNencdec has no alignment model
    c.model.attention_dim = 1000
  # Training: Section 4.2 / Appendix B.2 — Adadelta (ρ = 0.95, ε = 1e-6),
  # minibatches of 80 sentences, gradient L2 norm rescaled to at most 1;
  # about 5 days of training. The update count is not given: 370k is our
  # choice.
  c.train.update(
    optimizer="adadelta",
    learning_rate=1.0,
    schedule="constant",
    warmup_steps=0,
    batch_size=80,
    grad_clip_norm=1.0,
    steps=370_000,
  )
  # Decoding: Section 4.2, beam search; the beam width is not given in the
  # paper (12 here, as Sutskever et al. 2014).
  c.eval.update(batch_size=80, beam_size=12)
  return common.paper_tiny(c) if tiny else c
