"""Global attention of Luong et al. 2015 on ``reverse`` of sequences up to length 30.

Two-layer LSTM encoder and decoder, ``general`` score h_tᵀ W_a h̄_s, input
feeding, attentional state h̃_t = tanh(W_c [c_t; h_t]); hidden 64, vocabulary 10,
lengths 1–30, Adam 3e-3 with 200 warm-up steps then cosine to 5%, clip 1.0,
2,000 steps. Try ``--config.model.attention_score=dot`` or ``concat``, and
``--config.model.input_feeding=False``.

Measured (2-core CPU dev machine, 30 Nov 2026, shared with two other processes):
``python -m experiments.run --config configs/luong.py --workdir W`` took 283 s
wall; eval on 1,000 sequences of length 1–30 held out by hash:
sequence_accuracy 0.751 at step 500, 1.000 at 1,000, 1,500 and **1.000**
(token_accuracy 1.000) at 2,000.

``get_config("tiny")``: a few-second version for tests.
"""

from configs import common


def get_config(arg=None):
  config = common.synthetic("reverse", 30, steps=2000, every=500)
  config.model.update(
    name="luong",
    embed_dim=32,
    hidden_size=64,
    num_layers=2,
    attention_score="general",
    input_feeding=True,
  )
  return common.apply_mode(config, arg, __file__, tiny=common.tiny_synthetic)
