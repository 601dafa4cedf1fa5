"""Autoregressive decoding, compiled: greedy search, beam search, sampling.

Every search drives a model through the seq2seq protocol (``models/seq2seq.py``):
``encode(src) -> memory``, ``init_decode_state(memory) -> state``, ``decode_step(memory,
state, token) -> (logits [B, V], state, attention [B, S] | None)``; the state is any pytree
(GRU carry, LSTM tuple, KV cache), gathered per beam with ``jax.tree.map``. Each search is
one ``lax.while_loop`` that stops when every sequence has ended, so it runs under
``jax.jit``. Beam search ranks by ``log P(Y|X) / lp(Y)``, ``lp(Y) = ((5 + |Y|)/6)^α``
(Wu et al. 2016).
Documented in docs/models.md#decoding.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from absl import logging

from attention_jax.data.vocab import BOS, EOS, PAD

NEG_INF = -jnp.inf


class Hypotheses(NamedTuple):
  """Fixed-shape outputs of every search. ``tokens``: the hypothesis, EOS
  included, PAD after it (never PAD or BOS inside), at most ``L`` and
  ``floor(max_length_a * source_length + max_length_b)`` tokens (a hypothesis
  that reaches its limit without EOS ends there). ``scores``: the summed
  log-probability (greedy, sampling) or the length-normalised score (beam
  search). ``attention``: row t holds the cross-attention weights that
  predicted ``tokens[:, t]`` (zero after the end; under beam search those of
  the chosen hypothesis, carried with its beam), None without attention."""

  tokens: jax.Array  # (B, L) int32, PAD after EOS
  scores: jax.Array  # (B,) float32
  attention: jax.Array | None  # (B, L, S) or None


# --------------------------------------------------------------------------
# Lengths and penalties


def max_output_length(src_length: int, a: float, b: float, cap: int | None = None) -> int:
  """The static output buffer length ``floor(a * S + b)`` (≥ 1, ≤ cap)."""
  n = max(1, int(math.floor(a * src_length + b)))
  return n if cap is None else max(1, min(n, cap))


def example_max_lengths(src: jax.Array, L: int, a: float | None, b: float | None) -> jax.Array:
  """Per-example limit ``min(L, floor(a * |x| + b))`` (≥ 1). -> (B,) int32."""
  if a is None and b is None:
    return jnp.full((src.shape[0],), L, jnp.int32)
  a = 0.0 if a is None else a
  b = 0.0 if b is None else b
  n = (src != PAD).sum(axis=1).astype(jnp.float32)
  m = jnp.floor(a * n + b).astype(jnp.int32)
  return jnp.clip(m, 1, L)


def cap_to_model(model, L: int, extra_steps: int = 0, source_width: int = 0) -> int:
  """``L`` capped so that ``L + extra_steps`` decode steps fit the model's
  decoder state (``model.decode_positions``, or
  ``model.decode_capacity(source_width)``; absent = unbounded) — greedy
  search takes ``L`` steps, beam search ``L + 1``; warns once per call, naming
  ``model.max_positions``, when it cuts (never a silent clamp)."""
  capacity = getattr(model, "decode_positions", None)
  if hasattr(model, "decode_capacity"):
    capacity = model.decode_capacity(source_width)
  if capacity is None or L + extra_steps <= capacity:
    return L
  capped = max(1, capacity - extra_steps)
  source = f" ({source_width} of them hold the source)" if hasattr(model, "decode_capacity") else ""
  logging.warning(
    "decode limit of %d tokens exceeds the KV cache of model.max_positions=%d "
    "positions%s: output capped at %d tokens (train with a larger "
    "model.max_positions to decode longer)",
    L,
    getattr(model, "max_positions", capacity),
    source,
    capped,
  )
  return capped


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
  """lp(Y) = ((5 + |Y|) / 6)^α (Wu et al. 2016, eq. 14); |Y| counts EOS."""
  return ((5.0 + length.astype(jnp.float32)) / 6.0) ** alpha


def _log_probs(logits: jax.Array) -> jax.Array:
  """log p over the vocabulary, with PAD and BOS forbidden. (…, V)"""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return logp.at[..., PAD].set(NEG_INF).at[..., BOS].set(NEG_INF)


def _attention_struct(model, memory, state, B: int):
  """The abstract attention output of ``decode_step`` (None if it has none)."""
  token = jax.ShapeDtypeStruct((B,), jnp.int32)
  return jax.eval_shape(lambda m, s, t: model.decode_step(m, s, t)[2], memory, state, token)


# --------------------------------------------------------------------------
# Greedy and sampling


def _sequential_search(model, src, L, choose, max_length_a, max_length_b, rng=None) -> Hypotheses:
  """One token per step for each sequence; ``choose(logp, rng) -> token``."""
  L = cap_to_model(model, L, source_width=src.shape[1])  # L steps: 0 … L-1
  B = src.shape[0]
  memory = model.encode(src)
  state = model.init_decode_state(memory)
  limit = example_max_lengths(src, L, max_length_a, max_length_b)  # (B,)
  attn_struct = _attention_struct(model, memory, state, B)
  attn0 = (
    None if attn_struct is None else jnp.zeros((B, L, attn_struct.shape[-1]), attn_struct.dtype)
  )
  rng = jax.random.PRNGKey(0) if rng is None else rng

  def cond(carry):
    t, _, _, done, *_ = carry
    return (t < L) & ~jnp.all(done)

  def body(carry):
    t, state, token, done, tokens, scores, attn = carry
    logits, state, attention = model.decode_step(memory, state, token)
    logp = _log_probs(logits)  # (B, V)
    nxt = choose(logp, jax.random.fold_in(rng, t)).astype(jnp.int32)
    nxt = jnp.where(done, PAD, nxt)
    tok_logp = jnp.take_along_axis(logp, nxt[:, None], axis=1)[:, 0]
    scores = scores + jnp.where(done, 0.0, tok_logp)
    tokens = tokens.at[:, t].set(nxt)
    if attn is not None:
      attn = attn.at[:, t].set(jnp.where(done[:, None], 0.0, attention))
    done = done | (nxt == EOS) | (t + 1 >= limit)
    return t + 1, state, nxt, done, tokens, scores, attn

  init = (
    jnp.zeros((), jnp.int32),
    state,
    jnp.full((B,), BOS, jnp.int32),
    jnp.zeros((B,), bool),
    jnp.full((B, L), PAD, jnp.int32),
    jnp.zeros((B,), jnp.float32),
    attn0,
  )
  _, _, _, _, tokens, scores, attn = jax.lax.while_loop(cond, body, init)
  return Hypotheses(tokens, scores, attn)


def greedy_search(
  model,
  src: jax.Array,
  max_length: int,
  *,
  max_length_a: float | None = None,
  max_length_b: float | None = None,
) -> Hypotheses:
  """Greedy search: y_t = argmax_y log p(y | y_<t, x). Scores are Σ log p."""
  return _sequential_search(
    model, src, max_length, lambda logp, _: jnp.argmax(logp, axis=-1), max_length_a, max_length_b
  )


def greedy_decode(
  model, src: jax.Array, max_length: int, **kwargs
) -> tuple[jax.Array, jax.Array | None]:
  """``(tokens [B, L], attention [B, L, S] | None)`` of :func:`greedy_search`."""
  h = greedy_search(model, src, max_length, **kwargs)
  return h.tokens, h.attention


def sample_logits(
  logp: jax.Array, rng: jax.Array, temperature: float = 1.0, top_k: int = 0
) -> jax.Array:
  """Draws y ~ softmax(logp / T), restricted to the ``top_k`` most likely
  tokens when ``top_k > 0`` (Fan et al. 2018). ``temperature == 0`` is argmax.
  logp [..., V] -> [...] int32."""
  if temperature == 0.0:
    return jnp.argmax(logp, axis=-1).astype(jnp.int32)
  logits = logp / temperature
  if top_k > 0:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, NEG_INF, logits)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def sample(
  model,
  src: jax.Array,
  max_length: int,
  rng: jax.Array,
  *,
  temperature: float = 1.0,
  top_k: int = 0,
  max_length_a: float | None = None,
  max_length_b: float | None = None,
) -> Hypotheses:
  """Ancestral sampling from a seq2seq model (temperature, top-k)."""
  return _sequential_search(
    model,
    src,
    max_length,
    lambda logp, key: sample_logits(logp, key, temperature, top_k),
    max_length_a,
    max_length_b,
    rng=rng,
  )


def sample_lm(
  model,
  prompt: jax.Array,
  rng: jax.Array,
  *,
  max_new_tokens: int,
  temperature: float = 1.0,
  top_k: int = 0,
  banned: int = EOS + 1,
) -> jax.Array:
  """Autoregressive sampling from a decoder-only LM (``models.gpt.GPT``)
  through its KV cache, one ``lax.scan``.

  prompt [B, P] -> new tokens [B, max_new_tokens]. The prompt fills the cache
  in one ``decode`` call; each scan step draws with :func:`sample_logits`
  and feeds the token drawn. Ids below ``banned`` (PAD, BOS, EOS) are never
  drawn. P + max_new_tokens must be ≤ ``model.max_positions`` (the position
  table): ValueError naming it otherwise, never a silent clamp.
  """
  B, P = prompt.shape
  if P + max_new_tokens > model.max_positions:
    raise ValueError(
      f"prompt ({P} tokens) + max_new_tokens ({max_new_tokens}) exceeds "
      f"model.max_positions ({model.max_positions}), the length of the "
      "position table"
    )
  cache = model.init_cache(B, P + max_new_tokens)
  logits, cache = model.decode(prompt, cache)  # (B, P, V)

  def body(carry, key):
    cache, last = carry
    allowed = last.astype(jnp.float32).at[:, :banned].set(NEG_INF)  # (B, V)
    token = sample_logits(allowed, key, temperature, top_k)  # (B,)
    logits, cache = model.decode(token[:, None], cache)
    return (cache, logits[:, 0]), token

  keys = jax.random.split(rng, max_new_tokens)
  _, tokens = jax.lax.scan(body, (cache, logits[:, -1]), keys)
  return tokens.T  # (B, N)


# --------------------------------------------------------------------------
# Beam search


def _expand(tree: Any, B: int, K: int) -> Any:
  """Repeats every leaf with leading axis B to B*K (beam-major within a row);
  other leaves (e.g. a cache position shared by the batch) are kept."""

  def f(x):
    if hasattr(x, "ndim") and x.ndim > 0 and x.shape[0] == B:
      return jnp.repeat(x, K, axis=0)
    return x

  return jax.tree.map(f, tree)


def _gather_flat(tree: Any, flat_index: jax.Array, BK: int) -> Any:
  """Selects rows ``flat_index`` (B*K,) of every leaf with leading axis B*K."""

  def f(x):
    if hasattr(x, "ndim") and x.ndim > 0 and x.shape[0] == BK:
      return x[flat_index]
    return x

  return jax.tree.map(f, tree)


def _take_beams(x: jax.Array, index: jax.Array) -> jax.Array:
  """x [B, K, ...], index [B, K'] -> [B, K', ...]."""
  return jax.vmap(lambda xb, ib: xb[ib])(x, index)


class BeamResult(NamedTuple):
  best: Hypotheses  # the highest-scoring finished hypothesis
  tokens: jax.Array  # (B, K, L) the K finished, best first
  scores: jax.Array  # (B, K)


def beam_search(
  model,
  src: jax.Array,
  max_length: int,
  *,
  beam_size: int,
  alpha: float = 0.6,
  max_length_a: float | None = None,
  max_length_b: float | None = None,
) -> BeamResult:
  """Beam search with length normalisation (Wu et al. 2016, Section 7).

  Keeps the ``K = beam_size`` most probable unfinished prefixes (by Σ log p);
  at each step extends each by every token, takes the 2K best extensions,
  moves those among the first K that end in EOS (or reach the length limit)
  to the finished set with score s(Y, X) = log P(Y | X) / lp(Y),
  lp(Y) = ((5 + |Y|)/6)^α, keeps the K best finished, and continues with
  the K best that did not finish. An example stops when no live prefix can
  still beat its K-th finished score: with α ≥ 0 and log p ≤ 0, a live prefix
  can reach at most log P(prefix) / lp(limit). With α = 0 the score is the plain log P.

  Returns the best hypothesis with its attention, and the K finished
  hypotheses sorted by score.
  """
  K = beam_size
  B = src.shape[0]
  BK = B * K
  L = cap_to_model(
    model, max_length, extra_steps=1, source_width=src.shape[1]
  )  # BOS step + L steps
  memory = model.encode(src)
  limit = example_max_lengths(src, L, max_length_a, max_length_b)  # (B,)
  state = model.init_decode_state(memory)
  attn_struct = _attention_struct(model, memory, state, B)
  memory = _expand(memory, B, K)
  state = _expand(state, B, K)
  has_attn = attn_struct is not None
  S = attn_struct.shape[-1] if has_attn else 0
  adt = attn_struct.dtype if has_attn else jnp.float32
  # The first decode step (BOS) runs outside the loop: the loop body then
  # selects tokens from pending logits and runs the model on the selected
  # beams, so the model is called once per position.
  logits, state, attention = model.decode_step(memory, state, jnp.full((BK,), BOS, jnp.int32))
  V = logits.shape[-1]
  lp_limit = length_penalty(limit, alpha)  # (B,)

  def beams(x):  # (B*K, ...) -> (B, K, ...)
    return x.reshape(B, K, *x.shape[1:])

  carry = dict(
    t=jnp.zeros((), jnp.int32),
    state=state,
    logp=_log_probs(logits),  # (BK, V)
    attention=attention,  # (BK, S)
    # only beam 0 is live at the start: the others would duplicate it
    live_score=jnp.tile(jnp.array([0.0] + [NEG_INF] * (K - 1)), (B, 1)),
    live_tokens=jnp.full((B, K, L), PAD, jnp.int32),
    live_attn=jnp.zeros((B, K, L, S), adt),
    fin_score=jnp.full((B, K), NEG_INF),
    fin_tokens=jnp.full((B, K, L), PAD, jnp.int32),
    fin_attn=jnp.zeros((B, K, L, S), adt),
  )

  def cond(c):
    best_live = c["live_score"].max(axis=1) / lp_limit  # (B,)
    worst_fin = c["fin_score"].min(axis=1)  # (B,)
    return (c["t"] < L) & jnp.any(best_live > worst_fin)

  def body(c):
    t = c["t"]
    cand = c["live_score"][:, :, None] + beams(c["logp"])  # (B, K, V)
    top_score, top_index = jax.lax.top_k(cand.reshape(B, K * V), 2 * K)
    origin, token = top_index // V, (top_index % V).astype(jnp.int32)  # (B, 2K)
    length = t + 1
    ends = (token == EOS) | (length >= limit)[:, None]  # (B, 2K)
    prefix_tokens = _take_beams(c["live_tokens"], origin)  # (B, 2K, L)
    cand_tokens = prefix_tokens.at[:, :, t].set(token)
    if has_attn:
      step_attn = _take_beams(beams(c["attention"]), origin)  # (B, 2K, S)
      cand_attn = _take_beams(c["live_attn"], origin).at[:, :, t].set(step_attn)
    # Finished: the ended ones among the K best extensions (as fairseq: an EOS
    # ranked below K is dropped, so K = 1 is exactly greedy search when
    # α = 0), merged with the old; keep the K best.
    in_top = jnp.arange(2 * K)[None, :] < K
    new_fin = jnp.where(ends & in_top, top_score / length_penalty(length, alpha), NEG_INF)
    all_fin = jnp.concatenate([c["fin_score"], new_fin], axis=1)  # (B, 3K)
    fin_score, keep = jax.lax.top_k(all_fin, K)
    fin_tokens = _take_beams(jnp.concatenate([c["fin_tokens"], cand_tokens], axis=1), keep)
    fin_attn = c["fin_attn"]
    if has_attn:
      fin_attn = _take_beams(jnp.concatenate([fin_attn, cand_attn], axis=1), keep)
    # Live: the K best extensions that did not end.
    live_cand = jnp.where(ends, NEG_INF, top_score)
    live_score, pick = jax.lax.top_k(live_cand, K)  # (B, K)
    live_tokens = _take_beams(cand_tokens, pick)
    live_attn = c["live_attn"]
    if has_attn:
      live_attn = _take_beams(cand_attn, pick)
    live_origin = _take_beams(origin, pick)  # (B, K)
    live_token = _take_beams(token, pick)
    flat = (jnp.arange(B)[:, None] * K + live_origin).reshape(BK)
    state = _gather_flat(c["state"], flat, BK)
    logits, state, attention = model.decode_step(memory, state, live_token.reshape(BK))
    return dict(
      t=t + 1,
      state=state,
      logp=_log_probs(logits),
      attention=attention,
      live_score=live_score,
      live_tokens=live_tokens,
      live_attn=live_attn,
      fin_score=fin_score,
      fin_tokens=fin_tokens,
      fin_attn=fin_attn,
    )

  c = jax.lax.while_loop(cond, body, carry)
  best_attn = c["fin_attn"][:, 0] if has_attn else None
  best = Hypotheses(c["fin_tokens"][:, 0], c["fin_score"][:, 0], best_attn)
  return BeamResult(best, c["fin_tokens"], c["fin_score"])


# --------------------------------------------------------------------------
# One entry point


def decode(
  model,
  src: jax.Array,
  max_length: int,
  *,
  beam_size: int = 1,
  alpha: float = 0.6,
  max_length_a: float | None = None,
  max_length_b: float | None = None,
) -> Hypotheses:
  """Greedy search for ``beam_size == 1``, else beam search's best."""
  if beam_size <= 1:
    return greedy_search(
      model, src, max_length, max_length_a=max_length_a, max_length_b=max_length_b
    )
  return beam_search(
    model,
    src,
    max_length,
    beam_size=beam_size,
    alpha=alpha,
    max_length_a=max_length_a,
    max_length_b=max_length_b,
  ).best


def decode_from_config(model, src: jax.Array, config, beam_size: int | None = None) -> Hypotheses:
  """:func:`decode` with the ``eval.*`` settings of ``config``; the buffer
  length is ``floor(eval.max_length_a * S + eval.max_length_b)``."""
  eval_config = config.eval
  L = max_output_length(src.shape[1], eval_config.max_length_a, eval_config.max_length_b)
  return decode(
    model,
    src,
    L,
    beam_size=eval_config.beam_size if beam_size is None else beam_size,
    alpha=eval_config.length_penalty,
    max_length_a=eval_config.max_length_a,
    max_length_b=eval_config.max_length_b,
  )
