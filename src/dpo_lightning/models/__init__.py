"""Models: loading (hub id, local folder, embedded GGUF), random-init models (tiny test model, real shapes), LoRA."""

from .embedded import resolve_embedded
from .loading import LoadedModel, load_causal_lm, load_tokenizer, sequence_classifier, with_head
from .lora import is_peft_model, wrap_lora
from .random_init import SHAPES, build_random_llama, build_tiny_llama

__all__ = [
    "resolve_embedded",
    "LoadedModel",
    "build_tiny_llama",
    "build_random_llama",
    "SHAPES",
    "load_causal_lm",
    "load_tokenizer",
    "sequence_classifier",
    "with_head",
    "is_peft_model",
    "wrap_lora",
]
