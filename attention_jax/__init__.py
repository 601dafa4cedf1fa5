"""attention_jax: from RNN encoder–decoders to attention and Transformers, in JAX."""
