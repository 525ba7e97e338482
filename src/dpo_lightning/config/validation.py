"""The fail-fast check of the composed config: it runs before any model is loaded and names the key.

It restates no rule. It builds what is cheap to build (the loss, the data module without a tokenizer: both check
their own arguments) and calls the validators of what is not (the LM head's tile sizes, the packed layout's
attention, the model's quantization and source), turning their errors into a `ConfigError`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..core.batches import check_packed_attention
from ..core.hub import is_hub_id, looks_local
from ..core.lm_head import check_tile_size
from ..core.reference import check_reference_sync
from ..models.loading import check_quantization, run_final_model
from .recipes import recipe_warnings

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    pass


def validate_config(cfg: DictConfig) -> list[str]:
    """Raise a `ConfigError` naming the key of a setting that cannot work; log (and return) the warnings of those
    that can but are likely mistakes (a learning rate far from the model's recipe, a visible GPU left unused)."""
    loss = _build(cfg.loss) if cfg.get("loss") else None
    _build(cfg.data, tokenizer=None, report_path=None)
    module = cfg.get("module") or {}
    if module.get("ref_sync_steps") is not None:
        lora = (cfg.get("peft") or {}).get("_target_") is not None and module.get("reference") is None
        needs = getattr(loss, "requires_reference", True)
        precompute = bool(module.get("precompute_ref"))
        _check(check_reference_sync, module.ref_sync_steps, module.get("ref_sync_alpha", 0.6), needs, precompute, lora)
    for key in ("head_chunk_size", "head_vocab_chunk_size"):
        if key in module:
            _check(check_tile_size, key, module[key])
    if cfg.data.get("packing", False):
        on_cpu = str((cfg.get("trainer") or {}).get("accelerator", "auto")) == "cpu"
        _check(check_packed_attention, cfg.model.get("attn_implementation"), on_cpu)
    if cfg.data.get("streaming"):
        if int((cfg.get("trainer") or {}).get("max_steps", -1)) <= 0:
            raise ConfigError("data.streaming: the stream has no end; set trainer.max_steps (e.g. 1000)")
        if (cfg.get("module") or {}).get("precompute_ref"):
            raise ConfigError("module.precompute_ref needs every training pair in advance: not with data.streaming")
    if cfg.model.get("quantization"):
        _check(check_quantization, str(cfg.model.quantization))
    validate_model_source(cfg.model)
    warnings = recipe_warnings(cfg)
    for warning in warnings:
        log.warning(warning)
    return warnings


def validate_model_source(model: DictConfig) -> None:
    """`model.init_from` is a finished run; else `model.name_or_path` is a local model folder or a hub id."""
    init_from = model.get("init_from")
    if init_from:
        _check(run_final_model, str(init_from))
        return
    name = model.get("name_or_path")
    if name and not str(name).startswith("embedded:"):
        if looks_local(str(name)):
            if not Path(str(name)).expanduser().is_dir():
                raise ConfigError(f"model.name_or_path: {name} is not a local model folder (one holding config.json)")
        elif not is_hub_id(str(name)):
            raise ConfigError(f"model.name_or_path: {name!r} is neither a local folder nor a hub id like 'org/model'")


def _build(node: DictConfig, **kwargs) -> object:
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:  # the constructor's own error, which names the key
        cause = e.__cause__ if isinstance(e.__cause__, (ValueError, FileNotFoundError)) else e
        raise ConfigError(str(cause)) from None


def _check(validator, *args) -> None:
    try:
        validator(*args)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None
