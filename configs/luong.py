"""Global attention of Luong et al. 2015 on ``reverse`` of sequences up to length 30.

Two-layer LSTM encoder and decoder, ``general`` score h_tᵀ W_a h̄_s, input
feeding, attentional state h̃_t = tanh(W_c [c_t; h_t]); hidden 64, vocabulary 10,
lengths 1–30, Adam 3e-3 with 200 warm-up steps then cosine to 5%, clip 1.0,
2,000 steps. Try ``--config.model.attention_score=dot`` or ``concat``, and
``--config.model.input_feeding=False``.

Results: docs/models.md, "Recurrent encoder–decoders".

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
