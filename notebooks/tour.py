# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # A tour of attention_jax
#
# From attention written out by hand to trained models, in one notebook that runs on a
# CPU in a few minutes:
#
# 1. **Attention step by step**: the weights of a short sentence without trainable
#    weights, with trainable $W_q, W_k, W_v$, with the causal mask and with several
#    heads — and the production `MultiHeadAttention` computing the same numbers.
# 2. **The bottleneck**: the encoder–decoder of Cho et al. 2014 (one context vector)
#    against RNNsearch (Bahdanau et al. 2014, attention), exact match by source length.
# 3. **A trained model from its workdir**: `attention_jax.workdir.load`, a translation
#    and its alignment.
# 4. **A small GPT** trained on this repository's README and sampled.
#
# Every cell calls the package's public functions. The runs here are short (seconds
# each); the commands in the README train the same models to the numbers it reports.

# %%
import os
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import attention_jax
from attention_jax import attention, evaluation, generate, plots, train, workdir
from attention_jax.sweeps import analyses
from configs import gpt, quickstart, rnnsearch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(attention_jax.__file__)))

# %matplotlib inline

WORK = tempfile.mkdtemp(prefix="attention_jax_tour_")
print("jax", jax.__version__, "on", jax.default_backend(), "| runs in", WORK)

# %% [markdown]
# ## 1. Attention step by step
#
# Six tokens, each a 3-dimensional embedding (the running example of Raschka's *Build a
# Large Language Model (from Scratch)*, chapter 3). Without trainable weights, the score
# of token $i$ for token $j$ is the dot product $\omega_{ij} = x_i \cdot x_j$, the weights
# are $\alpha_{ij} = \mathrm{softmax}_j\, \omega_{ij}$ and the context is
# $z_i = \sum_j \alpha_{ij} x_j$.

# %%
tokens = ["Your", "journey", "starts", "with", "one", "step"]
x = jnp.array(
  [
    [0.43, 0.15, 0.89],
    [0.55, 0.87, 0.66],
    [0.57, 0.85, 0.64],
    [0.22, 0.58, 0.33],
    [0.77, 0.25, 0.10],
    [0.05, 0.80, 0.55],
  ]
)  # (T=6, D=3)


def show(weights, title):
  """One attention matrix as a heatmap: row i = query token, column j = key token."""
  fig = plots.attention_figure(np.asarray(weights), tokens, tokens, title=title)
  plt.show()
  plt.close(fig)


context, weights = attention.simple_self_attention(x)
print("context of 'journey':", np.round(context[1], 4))
print("every row sums to 1:", np.allclose(weights.sum(-1), 1.0))
show(weights, "no trainable weights: softmax(x xᵀ)")

# %% [markdown]
# **Trainable weights.** Queries, keys and values are projections $Q = xW_q$, $K = xW_k$,
# $V = xW_v$, and the scores are scaled by $\sqrt{d_k}$:
# $\alpha = \mathrm{softmax}(QK^\top / \sqrt{d_k})$. Here the weights are random (as at
# initialization); training moves them.

# %%
k_q, k_k, k_v, k_o = jax.random.split(jax.random.PRNGKey(123), 4)
d_out = 4
w_query = jax.random.uniform(k_q, (3, d_out))
w_key = jax.random.uniform(k_k, (3, d_out))
w_value = jax.random.uniform(k_v, (3, d_out))
context, weights = attention.self_attention_qkv(x, w_query, w_key, w_value)
print("context shape:", context.shape)
show(weights, "trainable W_q, W_k, W_v: softmax(Q Kᵀ / √d_k)")

# %% [markdown]
# **The causal mask.** A language model predicting token $i+1$ may look at tokens
# $\le i$ only: the scores above the diagonal are set to $-\infty$ before the softmax.

# %%
context, weights = attention.causal_self_attention(x, w_query, w_key, w_value)
print("upper triangle is zero:", bool((np.triu(np.asarray(weights), 1) == 0).all()))
show(weights, "causal: position i attends to j ≤ i")

# %% [markdown]
# **Several heads.** The projections are split into $n$ column blocks; each head attends
# on its own, and their outputs are concatenated and projected by $W_{out}$:
# $\mathrm{head}_h = \mathrm{softmax}(Q_h K_h^\top/\sqrt{d_h}) V_h$.

# %%
num_heads = 2
w_out = jax.random.uniform(k_o, (d_out, d_out))
mh_context, mh_weights = attention.multi_head_self_attention(
  x, w_query, w_key, w_value, w_out, num_heads=num_heads, causal=True
)
print("weights per head:", mh_weights.shape)  # (heads, T, T)
for h in range(num_heads):
  show(mh_weights[h], f"head {h + 1} of {num_heads} (causal)")

# %% [markdown]
# **The production layer computes the same.** `attention.MultiHeadAttention` is what the
# Transformer and GPT use (fused kernels where available, KV cache, RoPE/ALiBi). Its
# kernels are laid out per head — query/key/value $[D, n, d_h]$, output $[n, d_h, D]$ — so
# the block-split matrices above drop straight in.

# %%
mha = attention.MultiHeadAttention(
  3, num_heads, qkv_features=d_out, out_features=d_out, use_bias=False, rngs=nnx.Rngs(0)
)
mha.query.kernel[...] = w_query.reshape(3, num_heads, d_out // num_heads)
mha.key.kernel[...] = w_key.reshape(3, num_heads, d_out // num_heads)
mha.value.kernel[...] = w_value.reshape(3, num_heads, d_out // num_heads)
mha.out.kernel[...] = w_out.reshape(num_heads, d_out // num_heads, d_out)
prod_context, prod_weights = mha(x[None], is_causal=True, return_weights=True)
print("max |context difference|:", float(jnp.abs(prod_context[0] - mh_context).max()))
print("max |weights difference|:", float(jnp.abs(prod_weights[0] - mh_weights).max()))
np.testing.assert_allclose(prod_context[0], mh_context, atol=1e-5)
np.testing.assert_allclose(prod_weights[0], mh_weights, atol=1e-5)

# %% [markdown]
# ## 2. The bottleneck: one context vector against attention
#
# Two models learn to **reverse** sequences of 1–10 symbols: the quickstart GRU
# encoder–decoder (Cho et al. 2014), whose decoder sees the source only through the
# encoder's last state, and RNNsearch (Bahdanau et al. 2014), whose decoder attends over
# every encoder state. `train.train_and_evaluate(config, workdir)` is what
# `python -m experiments.run` calls. The runs are cut short for the notebook (a few hundred
# steps, the RNNsearch at its `:tiny` size); `configs/bottleneck.py` is the full ablation.


# %%
def short(config, steps):
  """The same experiment with fewer steps and a smaller evaluation."""
  config.train.steps = steps
  config.train.warmup_steps = min(config.train.warmup_steps, steps // 5)
  config.train.log_every_steps = steps
  config.eval.every_steps = config.checkpoint.every_steps = steps
  config.data.eval_examples = 200
  return config


encdec_config = short(quickstart.get_config(), 400)
attn_config = short(rnnsearch.get_config("tiny"), 400)
# RNNsearch at its tiny size on the quickstart's data: reverse 1-10 symbols of 10.
attn_config.data.update(vocab_size=10, train_max_length=10, eval_max_length=10)

runs = {"encoder-decoder (Cho et al. 2014)": encdec_config, "RNNsearch": attn_config}
workdirs = {}
for name, config in runs.items():
  workdirs[name] = os.path.join(WORK, config.model.name)
  final = train.train_and_evaluate(config, workdirs[name])
  print(f"{name}: exact match {final['sequence_accuracy']:.3f} on the held-out eval split")

# %% [markdown]
# Exact match by source length, on held-out sequences up to 1.5× the training limit
# (`attention_jax.sweeps.analyses.eval_by_length`: the decoding and metrics of
# `experiments.evaluate`). Without attention the whole source must squeeze through one
# vector, and long sequences are the first to fail.

# %%
fig, ax = plt.subplots(figsize=(6, 3.5))
for name, w in workdirs.items():
  rows = analyses.eval_by_length(w, max_length=15, examples_per_length=20)
  ax.plot(
    [r["length"] for r in rows], [r["sequence_accuracy"] for r in rows], marker="o", label=name
  )
ax.axvline(10.5, color="gray", linestyle=":", label="longest training source")
ax.set_xlabel("source length (symbols)")
ax.set_ylabel("exact match")
ax.set_ylim(-0.02, 1.02)
ax.legend(fontsize=8)
plt.show()
plt.close(fig)

# %% [markdown]
# ## 3. A trained model from its workdir
#
# `workdir.load(path, step=None)` rebuilds a run from its directory — config, data task,
# model and parameters — without executing any config file: what `evaluate`, `translate`
# and the other tools use. `evaluation.translate` decodes text as `experiments.translate`
# does and returns the attention of every output token.

# %%
run = workdir.load(workdirs["RNNsearch"])
print("restored", run.config.model.name, "at step", run.step)
(result,) = evaluation.translate(run.model, run.config, run.task, ["3 1 4 1 5 9 2 6"])
print("source:", " ".join(result["source"]), "->", result["text"])
fig = plots.attention_figure(
  result["attention"], result["source"], result["output"], "RNNsearch alignment (reverse)"
)
plt.show()
plt.close(fig)

# %% [markdown]
# ## 4. A small GPT
#
# `configs/gpt.py` trains a character-level GPT on any text file; here on this
# repository's README for a few hundred steps, then `generate.generate_text` samples
# from the checkpoint (as `python -m experiments.generate` does).

# %%
gpt_config = gpt.get_config()
gpt_config.data.train_path = os.path.join(ROOT, "README.md")
gpt_config = short(gpt_config, 300)
gpt_config.data.eval_examples = 64
gpt_dir = os.path.join(WORK, "gpt")
final = train.train_and_evaluate(gpt_config, gpt_dir)
print(f"held-out perplexity per character: {final['perplexity']:.2f}")
print(generate.generate_text(gpt_dir, "The model", max_new_tokens=120, temperature=0.8))
