"""LoRA adapters through peft. The reference model is then the same weights with the adapter disabled."""

from __future__ import annotations

from torch import nn

from ..core.logprobs import is_peft_model

__all__ = ["is_peft_model", "wrap_lora"]


def wrap_lora(
    model: nn.Module,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    bias: str = "none",
    task_type: str | None = None,
) -> nn.Module:
    """`task_type` null: CAUSAL_LM, or SEQ_CLS for a sequence classifier (a reward model), whose score head then
    trains in full and is saved with the adapter."""
    if task_type is None:
        task_type = "SEQ_CLS" if type(model).__name__.endswith("ForSequenceClassification") else "CAUSAL_LM"
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules, bias=bias, task_type=task_type
    )
    if getattr(model, "is_loaded_in_4bit", False):  # QLoRA: norms in fp32, inputs that carry gradients
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, config)
