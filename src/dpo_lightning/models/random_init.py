"""Random-init Llama models: the tiny test model (`model=tiny`), and real shapes for speed and memory checks of big
models without their weights.

`model=random model.shape=llama3_8b` trains a Llama-3-8B-shaped model from random weights through the same
train.py path as a downloaded one (the numbers mean nothing; the step time and memory are the real model's). The
benchmark (`bench/`) builds its workloads from the same shapes.
"""

from __future__ import annotations

from typing import Any

import torch

from .loading import (
    LoadedModel,
    check_quantization,
    load_causal_lm,
    load_tokenizer,
    prepare_for_training,
    resolve_name_or_path,
    with_head,
)

# name -> hidden, layers, attention heads, key/value heads, MLP width, vocabulary, LM head tied to the embedding
SHAPES: dict[str, tuple[int, int, int, int, int, int, bool]] = {
    "llama1b": (2048, 16, 32, 8, 8192, 128256, True),  # Llama-3.2-1B: 1.24B parameters
    "llama3_8b": (4096, 32, 32, 8, 14336, 128256, False),  # Llama-3-8B / 3.1-8B: 8.03B parameters
    "smollm2": (576, 30, 9, 3, 1536, 49152, True),  # SmolLM2-135M
    "tiny": (64, 2, 4, 2, 128, 49152, True),
    # Llama-3.2-1B's depth and vocabulary at a width of 32: its step is nearly all host work, the CPU proxy of a GPU
    # step's launches and syncs (bench/host_overhead.py)
    "llama1b_narrow": (32, 16, 4, 1, 64, 128256, True),
}


def llama_config(shape: str, attn_implementation: str = "sdpa", max_position_embeddings: int = 4096):
    from transformers import LlamaConfig

    if shape not in SHAPES:
        raise ValueError(f"model.shape must be one of {sorted(SHAPES)}, got {shape!r}")
    hidden, layers, heads, kv, inter, vocab, tied = SHAPES[shape]
    config = LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        vocab_size=vocab,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tied,
    )
    config._attn_implementation = attn_implementation
    return config


def build_random_llama(
    shape: str = "llama1b",
    tokenizer_from: str = "embedded:smollm2-135m-instruct",
    dtype: str = "bfloat16",
    device: str | None = None,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    cache_dir: str | None = None,
    recipe: Any = None,
    head: str | None = None,
) -> LoadedModel:
    """A Llama of `shape` with random weights in `dtype`, built on `device` (e.g. `cuda`: seconds for 8B parameters,
    against minutes of random init on a CPU), with the tokenizer of `tokenizer_from` (its ids are all below the
    shapes' vocabulary sizes). `recipe` is read by the other config groups (`config/recipes.py`), not here."""
    tokenizer = load_tokenizer(resolve_name_or_path(tokenizer_from, cache_dir))
    model = _seeded_model(llama_config(shape, attn_implementation), tokenizer, seed, dtype, device)
    return with_head(LoadedModel(model, tokenizer, f"random-{shape}(seed={seed})"), head)


def build_tiny_llama(
    tokenizer_from: str = "embedded:smollm2-135m-instruct",
    hidden_size: int = 8,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 2,
    intermediate_size: int = 16,
    seed: int = 0,
    name_or_path: str | None = None,
    cache_dir: str | None = None,
    init_from: str | None = None,
    quantization: str | None = None,
    recipe: Any = None,
    head: str | None = None,
) -> LoadedModel:
    """A random-init Llama of a few hundred thousand parameters sharing the tokenizer of `tokenizer_from`.

    Builds in seconds: for tests and smoke runs. With `name_or_path` (or `init_from`) set, that model is loaded.
    """
    if name_or_path or init_from:  # (load_causal_lm checks the quantization)
        return load_causal_lm(
            name_or_path, cache_dir=cache_dir, init_from=init_from, quantization=quantization, head=head
        )
    if quantization:
        check_quantization(quantization)
        raise ValueError("model.quantization needs saved weights to quantize: set model.name_or_path")
    from transformers import LlamaConfig

    tokenizer = load_tokenizer(resolve_name_or_path(tokenizer_from, cache_dir))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_attention_heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    return with_head(LoadedModel(_seeded_model(config, tokenizer, seed), tokenizer, f"tiny-llama(seed={seed})"), head)


def _seeded_model(config, tokenizer, seed: int, dtype: str = "float32", device: str | None = None):
    """The model of `config` with weights drawn from `seed` (the global RNG left as it was), the tokenizer's special
    ids in its config, ready for training."""
    from transformers import AutoModelForCausalLM

    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng(), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    prepare_for_training(model)
    return model
