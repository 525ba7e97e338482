"""Random-init Llama models of real shapes: speed and memory checks of big models without their weights.

`model=random model.shape=llama3_8b` trains a Llama-3-8B-shaped model from random weights through the same
train.py path as a downloaded one (the numbers mean nothing; the step time and memory are the real model's). The
benchmark (`bench/`) builds its workloads from the same shapes.
"""

from __future__ import annotations

import torch

from .loading import LoadedModel, load_tokenizer, prepare_for_training, resolve_name_or_path

# name -> hidden, layers, attention heads, key/value heads, MLP width, vocabulary, LM head tied to the embedding
SHAPES: dict[str, tuple[int, int, int, int, int, int, bool]] = {
    "llama1b": (2048, 16, 32, 8, 8192, 128256, True),  # Llama-3.2-1B: 1.24B parameters
    "llama3_8b": (4096, 32, 32, 8, 14336, 128256, False),  # Llama-3-8B / 3.1-8B: 8.03B parameters
    "smollm2": (576, 30, 9, 3, 1536, 49152, True),  # SmolLM2-135M
    "tiny": (64, 2, 4, 2, 128, 49152, True),
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
) -> LoadedModel:
    """A Llama of `shape` with random weights in `dtype`, built on `device` (e.g. `cuda`: seconds for 8B parameters,
    against minutes of random init on a CPU), with the tokenizer of `tokenizer_from` (its ids are all below the
    shapes' vocabulary sizes)."""
    from transformers import AutoModelForCausalLM

    config = llama_config(shape, attn_implementation)
    tokenizer = load_tokenizer(resolve_name_or_path(tokenizer_from, cache_dir))
    config.bos_token_id, config.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    with torch.random.fork_rng(), torch.device(device or "cpu"):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    prepare_for_training(model)
    return LoadedModel(model, tokenizer, f"random-{shape}(seed={seed})")
