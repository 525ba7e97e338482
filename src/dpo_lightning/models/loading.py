"""Policy and tokenizer from a hub id, a local folder or the embedded model, with safe defaults.

`trust_remote_code` is off unless the config turns it on; weights load from safetensors only, unless
`allow_pickle=true` explicitly allows `.bin`/`.pt` files (which can run code when unpickled).
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .embedded import is_embedded, resolve_embedded

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: Any
    name_or_path: str


def resolve_name_or_path(name_or_path: str, cache_dir: str | None = None) -> str:
    if is_embedded(name_or_path):
        return str(resolve_embedded(name_or_path, cache_dir))
    local = Path(name_or_path).expanduser()
    if local.exists():
        if not local.is_dir():
            raise ValueError(f"model.name_or_path {name_or_path!r} is a file; give the folder that holds config.json")
        return str(local)
    return name_or_path


def load_tokenizer(name_or_path: str, trust_remote_code: bool = False, revision: str | None = None) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token  # padding is masked out everywhere; any id will do
    return tokenizer


def run_final_model(run_dir: str) -> str:
    """The final policy of a train.py run, as a full model folder (the merged copy for a LoRA run)."""
    final = Path(run_dir).expanduser() / "final"
    for candidate in (final, final / "merged"):
        if (candidate / "config.json").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"model.init_from={run_dir}: no final model (final/config.json or final/merged/config.json); "
        "was the run finished, and for LoRA exported with merge_adapter=true?"
    )


def load_causal_lm(
    name_or_path: str,
    dtype: str = "float32",
    revision: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    attn_implementation: str | None = "sdpa",
    cache_dir: str | None = None,
    init_from: str | None = None,
    quantization: str | None = None,
    recipe: Any = None,
    head: str | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer (`embedded:<name>`, a local Hugging Face folder, or a hub id).

    `recipe` (the model option's training recipe: learning rates, precision, batch; `config/recipes.py`) is read by
    the other config groups, never by loading. `head: score` puts a one-logit score head on the backbone (a
    reward model, conf/reward.yaml).

    `quantization="nf4"` loads the weights in 4-bit NF4 through bitsandbytes (QLoRA's base; `peft=qlora`).

    `init_from=<a train.py run directory>` starts from that run's final policy instead (for example an SFT run
    before DPO: policy and reference then both start from the SFT model)."""
    from transformers import AutoModelForCausalLM

    source = run_final_model(init_from) if init_from else resolve_name_or_path(name_or_path, cache_dir)
    if Path(source).is_dir() and not allow_pickle and not any(Path(source).glob("*.safetensors")):
        raise ValueError(
            f"{source} has no .safetensors weights; pickle-based weights (.bin/.pt) are refused "
            "unless model.allow_pickle=true"
        )
    model = AutoModelForCausalLM.from_pretrained(
        source,
        dtype=getattr(torch, dtype),
        revision=revision,
        trust_remote_code=trust_remote_code,
        use_safetensors=None if allow_pickle else True,
        attn_implementation=attn_implementation,
        **quantization_kwargs(quantization, dtype),
    )
    prepare_for_training(model)
    return with_head(LoadedModel(model, load_tokenizer(source, trust_remote_code, revision), name_or_path), head)


def quantization_kwargs(quantization: str | None, dtype: str = "bfloat16") -> dict:
    """from_pretrained arguments for a quantized base, after checking that this machine can run it."""
    if not quantization:
        return {}
    check_quantization(quantization)
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if dtype == "float32" else getattr(torch, dtype)
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return {"quantization_config": config, "device_map": {"": local_rank}}  # 4-bit weights are placed at load


def check_quantization(quantization: str) -> None:
    """A clear error, before anything loads, where 4-bit loading cannot work."""
    if quantization != "nf4":
        raise ValueError(f"model.quantization must be null or 'nf4', got {quantization!r}")
    if not torch.cuda.is_available():
        raise ValueError(
            "peft=qlora (model.quantization=nf4) loads the base model in 4-bit through bitsandbytes, "
            "whose 4-bit kernels need a CUDA GPU, and this machine has none. Use peft=lora here: "
            "the same adapters over a full-precision base."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError("peft=qlora needs bitsandbytes: pip install bitsandbytes")


def prepare_for_training(model: nn.Module) -> None:
    """No KV cache in training forwards (activation checkpointing is `module.activation_checkpointing`)."""
    model.config.use_cache = False


HEADS = (None, "score")


def with_head(loaded: LoadedModel, head: str | None) -> LoadedModel:
    if head not in HEADS:
        raise ValueError(f"model.head must be null (the LM head) or score (a reward model's), got {head!r}")
    return sequence_classifier(loaded) if head == "score" else loaded


def sequence_classifier(loaded: Any) -> Any:
    """A loaded causal LM (`models.LoadedModel`) as a one-logit sequence classifier on the same backbone: its
    weights copied, a new score head, the tokenizer's pad id in the config (where the reward is read)."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(loaded.model.config)
    config.num_labels = 1
    config.pad_token_id = loaded.tokenizer.pad_token_id
    if config.pad_token_id is None:
        config.pad_token_id = loaded.tokenizer.eos_token_id
    model = AutoModelForSequenceClassification.from_config(config, dtype=loaded.model.dtype)
    model.base_model.load_state_dict(loaded.model.base_model.state_dict())
    return LoadedModel(model, loaded.tokenizer, loaded.name_or_path)
