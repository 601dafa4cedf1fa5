"""Deep LSTM encoder–decoder of Sutskever et al. 2014, source reversed, on ``copy``.

Two-layer LSTM encoder and decoder, hidden 128, no attention. The task is
``copy`` (target = source), where reading the source backwards
(``model.reverse_source``, Sutskever et al. 2014 §3.3) puts each target symbol's
source next to it in time: "a b c" is read as "c b a" and produced as "a b c".
Sequences of 1–10 symbols from a vocabulary of 10, Adam 3e-3 with warm-up and
cosine decay, 3,000 steps.

Measured (2-core CPU dev machine shared by ~8 engineers, load average ~20–23):
``python -m experiments.run --config configs/seq2seq_lstm.py --workdir W`` took
376 s wall (6–23 steps/s under that load); eval on 1,000 held-out sequences of
length 1–10: sequence_accuracy 0.949 at step 1,000, 0.997 at 2,000 and
**1.000** (token_accuracy 1.000) at 3,000.

``get_config("tiny")``: a few-second version for tests (``reverse`` task).
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("copy", 10, steps=3000, every=1000)
  config.model.update(name="seq2seq_lstm", embed_dim=32, hidden_size=128,
                      num_layers=2, reverse_source=True)
  return common.apply_mode(config, arg, __file__, tiny=common.tiny_synthetic)
