"""PyTorch versions of the model suite's models, for its reference rows.

Each is written from the same equations as ours (models/transformer.py,
models/gpt.py, models/seq2seq.py), has the same parameters, and takes our
initial weights (:func:`build`), so the first losses agree and the two train
steps do the same work. Benchmark-only: imported by ``benchmarks/model.py``
when torch is installed.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PAD = 0


def _t(a) -> torch.Tensor:
  return torch.from_numpy(np.array(a, np.float32))


class _LayerNorm(nn.Module):
  """y = (x − μ) / √(σ² + ε) · γ + β over the last axis (ε = nnx.LayerNorm's 1e-6)."""

  def __init__(self, p):
    super().__init__()
    self.scale, self.bias = nn.Parameter(_t(p["scale"])), nn.Parameter(_t(p["bias"]))

  def forward(self, x):
    return F.layer_norm(x, x.shape[-1:], self.scale, self.bias, 1e-6)


class _Linear(nn.Module):
  """y = x W + b with our kernel layout W [in, out] (stored transposed for F.linear)."""

  def __init__(self, p):
    super().__init__()
    self.weight = nn.Parameter(_t(np.asarray(p["kernel"]).T))
    self.bias = nn.Parameter(_t(p["bias"])) if "bias" in p else None

  def forward(self, x):
    return F.linear(x, self.weight, self.bias)


class _MultiHeadAttention(nn.Module):
  """MultiHead(Q, K, V) = Concat(head_1…head_N) W^O, head_i = softmax(Q_i K_iᵀ/√h) V_i
  (torch SDPA); our kernels [D, N, h] / [N, h, D] flattened to [D, N·h] / [N·h, D]."""

  def __init__(self, p):
    super().__init__()
    D, N, h = np.shape(p["query"]["kernel"])
    self.N, self.h = N, h

    def flat(q):
      return {"kernel": np.reshape(q["kernel"], (D, N * h)), "bias": np.ravel(q["bias"])}

    self.query, self.key, self.value = (_Linear(flat(p[k])) for k in ("query", "key", "value"))
    self.out = _Linear(
      {"kernel": np.reshape(p["out"]["kernel"], (N * h, -1)), "bias": p["out"]["bias"]}
    )

  def _heads(self, x):  # [B, T, N·h] -> [B, N, T, h]
    return x.view(x.shape[0], x.shape[1], self.N, self.h).transpose(1, 2)

  def forward(self, x, kv=None, mask=None, is_causal=False):
    kv = x if kv is None else kv
    q, k, v = self._heads(self.query(x)), self._heads(self.key(kv)), self._heads(self.value(kv))
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    return self.out(o.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class _Block(nn.Module):
  """Pre-LN: x ← x + Sublayer(LN(x)); post-LN: x ← LN(x + Sublayer(x)) (no dropout)."""

  def __init__(self, p, *, pre_ln: bool, causal: bool, activation: str):
    super().__init__()
    self.pre_ln, self.causal = pre_ln, causal
    self.self_attn, self.ln_self = _MultiHeadAttention(p["self_attn"]), _LayerNorm(p["ln_self"])
    cross = "cross_attn" in p
    self.cross_attn = _MultiHeadAttention(p["cross_attn"]) if cross else None
    self.ln_cross = _LayerNorm(p["ln_cross"]) if cross else None
    self.fc1, self.fc2 = _Linear(p["ffn"]["fc1"]), _Linear(p["ffn"]["fc2"])
    self.ln_ffn = _LayerNorm(p["ln_ffn"])
    self.act = F.relu if activation == "relu" else lambda x: F.gelu(x, approximate="tanh")

  def _residual(self, x, ln, fn):
    if self.pre_ln:
      return x + fn(ln(x))
    return ln(x + fn(x))

  def forward(self, x, self_mask=None, memory=None, cross_mask=None):
    x = self._residual(
      x, self.ln_self, lambda h: self.self_attn(h, mask=self_mask, is_causal=self.causal)
    )
    if self.cross_attn is not None:
      x = self._residual(x, self.ln_cross, lambda h: self.cross_attn(h, kv=memory, mask=cross_mask))
    return self._residual(x, self.ln_ffn, lambda h: self.fc2(self.act(self.fc1(h))))


def _sinusoids(T: int, dim: int) -> torch.Tensor:
  """PE(pos, 2i) = sin(pos / 10000^{2i/d}), PE(pos, 2i+1) = cos(…): [T, dim]."""
  i = torch.arange(0, dim, 2, dtype=torch.float32)
  angle = torch.arange(T, dtype=torch.float32)[:, None] / torch.pow(10000.0, i / dim)
  return torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).reshape(T, -1)[:, :dim]


class Transformer(nn.Module):
  """Encoder–decoder, sinusoidal positions, √d-scaled embeddings, tied output layer."""

  def __init__(self, p, *, pre_ln: bool):
    super().__init__()
    D = np.shape(p["src_embed"]["embedding"])[1]
    self.dim = D
    self.src_embed = nn.Parameter(_t(p["src_embed"]["embedding"]))
    self.tgt_embed = nn.Parameter(_t(p["tgt_embed"]["embedding"]))
    enc = [p["encoder"][i] for i in sorted(p["encoder"])]
    dec = [p["decoder"][i] for i in sorted(p["decoder"])]
    self.encoder = nn.ModuleList(
      _Block(q, pre_ln=pre_ln, causal=False, activation="relu") for q in enc
    )
    self.decoder = nn.ModuleList(
      _Block(q, pre_ln=pre_ln, causal=True, activation="relu") for q in dec
    )
    self.enc_norm = _LayerNorm(p["enc_norm"]) if pre_ln else None
    self.dec_norm = _LayerNorm(p["dec_norm"]) if pre_ln else None

  def _embed(self, table, tokens):
    x = F.embedding(tokens, table) * math.sqrt(self.dim)
    return x + _sinusoids(tokens.shape[1], self.dim).to(x.device)

  def forward(self, src, tgt_in):
    """src [B, S], tgt_in [B, T] -> logits [B, T, V]."""
    key_mask = (src != PAD)[:, None, None, :]  # (B, 1, 1, S)
    x = self._embed(self.src_embed, src)
    for layer in self.encoder:
      x = layer(x, self_mask=key_mask)
    if self.enc_norm is not None:
      x = self.enc_norm(x)
    y = self._embed(self.tgt_embed, tgt_in)
    for layer in self.decoder:
      y = layer(y, memory=x, cross_mask=key_mask)
    if self.dec_norm is not None:
      y = self.dec_norm(y)
    return y @ self.tgt_embed.T


class GPT(nn.Module):
  """Decoder-only: h_0 = W_e[u] + W_p; causal blocks (GELU); logits = LN(h_L) W_eᵀ."""

  def __init__(self, p, *, pre_ln: bool):
    super().__init__()
    self.tok_embed = nn.Parameter(_t(p["tok_embed"]["embedding"]))
    self.pos_embed = nn.Parameter(_t(p["pos_embed"]["embedding"]))
    blocks = [p["blocks"][i] for i in sorted(p["blocks"])]
    self.blocks = nn.ModuleList(
      _Block(q, pre_ln=pre_ln, causal=True, activation="gelu") for q in blocks
    )
    self.final_norm = _LayerNorm(p["final_norm"]) if pre_ln else None

  def forward(self, tokens):
    """tokens [B, T] -> next-token logits [B, T, V]."""
    h = F.embedding(tokens, self.tok_embed) + self.pos_embed[: tokens.shape[1]]
    for block in self.blocks:
      h = block(h)
    if self.final_norm is not None:
      h = self.final_norm(h)
    return h @ self.tok_embed.T


# ---------------------------------------------------------------------------
# Recurrent encoder–decoders (models/seq2seq.py). The suite's batches have no
# padding, so the encoders read every position (a PAD in the source is refused).


def _no_padding(src):
  if bool((src == PAD).any()):
    raise ValueError("the torch recurrent models take unpadded sources only")


class _GRUCell(nn.Module):
  """Cho et al. 2014 GRU (eqs. 5–8; our ``reset_after=False``), gate order r, z, n:
  r, z = σ(x W_{r,z} + h U_{r,z} + b);  n = tanh(x W_n + (r ⊙ h) U_n + b_n);
  h' = z ⊙ h + (1 − z) ⊙ n. The input projection ``x W + b`` is computed by the caller."""

  def __init__(self, p):
    super().__init__()
    self.input_kernel = nn.Parameter(_t(p["input_kernel"]))
    self.input_bias = nn.Parameter(_t(p["input_bias"]))
    self.recurrent_kernel = nn.Parameter(_t(p["recurrent_kernel"]))
    self.H = self.recurrent_kernel.shape[0]

  def project(self, x):
    return torch.addmm(self.input_bias, x.reshape(-1, x.shape[-1]), self.input_kernel).view(
      *x.shape[:-1], -1
    )

  def step(self, h, xp):
    H, U = self.H, self.recurrent_kernel
    rz = torch.sigmoid(xp[:, : 2 * H] + h @ U[:, : 2 * H])
    r, z = rz[:, :H], rz[:, H:]
    n = torch.tanh(xp[:, 2 * H :] + (r * h) @ U[:, 2 * H :])
    return z * h + (1.0 - z) * n

  def run(self, x, h, reverse=False):
    """x [B, T, I] -> (final h, outputs [B, T, H])."""
    xp = self.project(x)
    order = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    ys = [None] * x.shape[1]
    for t in order:
      h = self.step(h, xp[:, t])
      ys[t] = h
    return h, torch.stack(ys, 1)


def _lstm(p, cls):
  """torch ``nn.LSTM``/``nn.LSTMCell`` with our weights (gate order i, f, g, o in
  both); torch's second bias is held at zero and frozen (ours has one bias)."""
  n_in, G = np.shape(p["input_kernel"])
  m = cls(n_in, G // 4) if cls is nn.LSTMCell else cls(n_in, G // 4, batch_first=True)
  sfx = "" if cls is nn.LSTMCell else "_l0"
  with torch.no_grad():
    getattr(m, "weight_ih" + sfx).copy_(_t(np.asarray(p["input_kernel"]).T))
    getattr(m, "weight_hh" + sfx).copy_(_t(np.asarray(p["recurrent_kernel"]).T))
    getattr(m, "bias_ih" + sfx).copy_(_t(p["input_bias"]))
    getattr(m, "bias_hh" + sfx).zero_()
  getattr(m, "bias_hh" + sfx).requires_grad_(False)
  return m


def _embeddings(p):
  return nn.Parameter(_t(p["src_embed"]["embedding"])), nn.Parameter(
    _t(p["tgt_embed"]["embedding"])
  )


def _readout(p):
  if "pre" in p and p["pre"]:
    raise ValueError("the torch recurrent models implement the linear readout only")
  return _Linear(p["out"])


class RNNEncoderDecoder(nn.Module):
  """Cho et al. 2014: c = GRU encoder's final state; s_0 = tanh(V c);
  s_t = GRU(s_{t−1}, [e(y_{t−1}); c]); logits = W [s_t; e(y_{t−1}); c]."""

  def __init__(self, p):
    super().__init__()
    self.src_embed, self.tgt_embed = _embeddings(p)
    self.encoder, self.decoder = _GRUCell(p["encoder"]), _GRUCell(p["decoder"])
    self.init_state, self.readout = _Linear(p["init_state"]), _readout(p["readout"])

  def forward(self, src, tgt_in):
    _no_padding(src)
    x = F.embedding(src, self.src_embed)
    c, _ = self.encoder.run(x, x.new_zeros(x.shape[0], self.encoder.H))
    e = F.embedding(tgt_in, self.tgt_embed)
    c_t = c[:, None].expand(-1, e.shape[1], -1)
    _, s = self.decoder.run(torch.cat([e, c_t], -1), torch.tanh(self.init_state(c)))
    return self.readout(torch.cat([s, e, c_t], -1))


class Seq2SeqLSTM(nn.Module):
  """Sutskever et al. 2014 (one layer each side): the decoder LSTM starts from
  the encoder's final (h, c); logits = W h_t."""

  def __init__(self, p):
    super().__init__()
    if len(p["encoder"]) != 1:
      raise ValueError("the torch seq2seq_lstm has one layer")
    self.src_embed, self.tgt_embed = _embeddings(p)
    self.encoder, self.decoder = _lstm(p["encoder"][0], nn.LSTM), _lstm(p["decoder"][0], nn.LSTM)
    self.readout = _readout(p["readout"])

  def forward(self, src, tgt_in):
    _no_padding(src)
    _, state = self.encoder(F.embedding(src, self.src_embed))
    h, _ = self.decoder(F.embedding(tgt_in, self.tgt_embed), state)
    return self.readout(h)


class RNNSearch(nn.Module):
  """Bahdanau et al. 2014: bidirectional GRU annotations h_j; s_0 = tanh(W_s h←_1);
  e_ij = vᵀ tanh(W s_{i−1} + U h_j + b), α = softmax, c_i = Σ α_ij h_j;
  s_i = GRU(s_{i−1}, [E y_{i−1}; c_i]); logits = W_o [s_i; E y_{i−1}; c_i]."""

  def __init__(self, p):
    super().__init__()
    self.src_embed, self.tgt_embed = _embeddings(p)
    self.encoder_fwd, self.encoder_bwd = _GRUCell(p["encoder_fwd"]), _GRUCell(p["encoder_bwd"])
    self.decoder = _GRUCell(p["decoder"])
    self.init_state, self.readout = _Linear(p["init_state"]), _readout(p["readout"])
    a = p["attention"]
    self.query_proj, self.key_proj = _Linear(a["query_proj"]), _Linear(a["key_proj"])
    self.v = nn.Parameter(_t(a["v"]))

  def forward(self, src, tgt_in):
    _no_padding(src)
    x = F.embedding(src, self.src_embed)
    h0 = x.new_zeros(x.shape[0], self.encoder_fwd.H)
    _, yf = self.encoder_fwd.run(x, h0)
    bwd_first, yb = self.encoder_bwd.run(x, h0, reverse=True)
    ann = torch.cat([yf, yb], -1)  # (B, S, 2H)
    keys = self.key_proj(ann)  # (B, S, A)
    e = F.embedding(tgt_in, self.tgt_embed)  # (B, T, E)
    E = e.shape[-1]
    W = self.decoder.input_kernel
    ep = torch.matmul(e, W[:E]) + self.decoder.input_bias  # hoisted: e's part
    s = torch.tanh(self.init_state(bwd_first))
    feats = []
    for i in range(e.shape[1]):
      scores = torch.tanh(self.query_proj(s)[:, None] + keys) @ self.v  # (B, S)
      alpha = torch.softmax(scores, -1)
      c = torch.bmm(alpha[:, None], ann)[:, 0]  # (B, 2H)
      s = self.decoder.step(s, ep[:, i] + c @ W[E:])
      feats.append(torch.cat([s, e[:, i], c], -1))
    return self.readout(torch.stack(feats, 1))


class Luong(nn.Module):
  """Luong et al. 2015, general score, input feeding, one layer: h_t = LSTM([E y_{t−1};
  h̃_{t−1}]); a_t = softmax_s(h_tᵀ W_a h̄_s); c_t = Σ a_t h̄_s; h̃_t = tanh(W_c [c_t; h_t]);
  logits = W_s h̃_t."""

  def __init__(self, p):
    super().__init__()
    if len(p["encoder"]) != 1 or p["attention"].get("W_a") is None:
      raise ValueError("the torch luong has one layer and the general score")
    self.src_embed, self.tgt_embed = _embeddings(p)
    self.encoder = _lstm(p["encoder"][0], nn.LSTM)
    self.decoder = _lstm(p["decoder"][0], nn.LSTMCell)
    self.W_a = _Linear(p["attention"]["W_a"])
    self.combine, self.readout = _Linear(p["combine"]), _readout(p["readout"])

  def forward(self, src, tgt_in):
    _no_padding(src)
    out, (h, c) = self.encoder(F.embedding(src, self.src_embed))  # h̄_s (B, S, H)
    h, c = h[0], c[0]
    keys = self.W_a(out)  # (B, S, H)
    e = F.embedding(tgt_in, self.tgt_embed)
    att = h.new_zeros(h.shape)
    outs = []
    for t in range(e.shape[1]):
      h, c = self.decoder(torch.cat([e[:, t], att], -1), (h, c))
      a = torch.softmax(torch.bmm(keys, h[:, :, None])[:, :, 0], -1)  # (B, S)
      ctx = torch.bmm(a[:, None], out)[:, 0]
      att = torch.tanh(self.combine(torch.cat([ctx, h], -1)))
      outs.append(att)
    return self.readout(torch.stack(outs, 1))


MODELS = {
  "transformer": Transformer,
  "gpt": GPT,
  "rnn_encdec": RNNEncoderDecoder,
  "seq2seq_lstm": Seq2SeqLSTM,
  "rnnsearch": RNNSearch,
  "luong": Luong,
}


def build(name: str, params, config) -> nn.Module:
  """The torch version of model ``name`` with our parameters ``params`` (a
  nested dict of arrays, ``nnx.State.to_pure_dict()``)."""
  if config.model.dropout or config.model.get("attention_dropout", 0.0):
    raise ValueError("the torch reference models have no dropout")
  cls = MODELS[name]
  if name in ("transformer", "gpt"):
    return cls(params, pre_ln=config.model.pre_ln)
  return cls(params)


def n_params(model: nn.Module) -> int:
  """Trainable parameters (a frozen zero LSTM ``bias_hh`` does not count)."""
  return sum(p.numel() for p in model.parameters() if p.requires_grad)
