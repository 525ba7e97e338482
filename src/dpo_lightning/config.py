"""Checks of the composed config that run before any model is loaded, naming the key and the allowed range."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


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
        if value and str(value).startswith((".", "/", "~")) and not Path(str(value)).expanduser().exists():
            raise ConfigError(f"data.{key}: file not found: {value}")
