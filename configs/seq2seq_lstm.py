"""Deep LSTM encoder–decoder of Sutskever et al. 2014, source reversed, on ``copy``.

Two-layer LSTM encoder and decoder, hidden 128, no attention. The task is
``copy`` (target = source), where reading the source backwards
(``model.reverse_source``, Sutskever et al. 2014 §3.3) puts each target symbol's
source next to it in time: "a b c" is read as "c b a" and produced as "a b c".
Sequences of 1–10 symbols from a vocabulary of 10, Adam 3e-3 with warm-up and
cosine decay, 3,000 steps.

Results: docs/models.md, "Recurrent encoder–decoders".

``get_config("tiny")``: a few-second version for tests (``reverse`` task).
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("copy", 10, steps=3000, every=1000)
  config.model.update(
    name="seq2seq_lstm", embed_dim=32, hidden_size=128, num_layers=2, reverse_source=True
  )
  return common.apply_mode(config, arg, __file__, tiny=common.tiny_synthetic)
