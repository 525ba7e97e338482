"""Checks of the composed config that run before any model is loaded, naming the key and the allowed range."""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig

from .data.readers import is_local
from .logprobs import MASKED_ATTENTION

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


class ConfigError(ValueError):
    pass


def validate_config(cfg: DictConfig) -> None:
    loss, data = cfg.loss, cfg.data
    if "beta" in loss and not loss.beta > 0:
        raise ConfigError(f"loss.beta must be > 0, got {loss.beta}")
    if "label_smoothing" in loss and not 0 <= loss.label_smoothing < 0.5:
        raise ConfigError(f"loss.label_smoothing must be in [0, 0.5), got {loss.label_smoothing}")
    if data.max_prompt_length >= data.max_length:
        raise ConfigError(f"data.max_prompt_length ({data.max_prompt_length}) must be < data.max_length ({data.max_length})")
    for key in ("path", "val_path"):
        value = data.get(key)
        if value and is_local(str(value)) and not Path(str(value)).expanduser().exists():
            raise ConfigError(f"data.{key}: file not found: {value}")
    for key, allowed in (("on_bad_row", ("error", "skip")), ("truncation_mode", ("keep_end", "keep_start", "drop"))):
        if key in data and data[key] not in allowed:
            raise ConfigError(f"data.{key} must be one of {allowed}, got {data[key]!r}")
    for key in ("head_chunk_size", "head_vocab_chunk_size"):
        value = (cfg.get("module") or {}).get(key)
        if value is not None and not (isinstance(value, int) and value >= 1):
            raise ConfigError(f"module.{key} (the LM head's tile size) must be an integer >= 1, got {value!r}")
    attn = cfg.model.get("attn_implementation")
    if data.get("packing", False) and attn is not None and attn not in MASKED_ATTENTION:
        raise ConfigError(f"data.packing=true needs an attention that takes a 4D mask (sdpa or eager), but "
                          f"model.attn_implementation={attn}: set data.packing=false or model.attn_implementation=sdpa")
    if cfg.model.get("quantization"):
        from .models.loading import check_quantization

        try:
            check_quantization(str(cfg.model.quantization))
        except ValueError as e:
            raise ConfigError(str(e)) from None
    init_from = cfg.model.get("init_from")
    if init_from:
        from .models.loading import run_final_model

        try:
            run_final_model(str(init_from))
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
        return
    name = cfg.model.get("name_or_path")
    if name and not str(name).startswith("embedded:"):
        local = Path(str(name)).expanduser()
        if is_local(str(name)):
            if not local.is_dir():
                raise ConfigError(f"model.name_or_path: {name} is not a local model folder (one holding config.json)")
        elif not HUB_ID.match(str(name)):
            raise ConfigError(f"model.name_or_path: {name!r} is neither a local folder nor a hub id like 'org/model'")

