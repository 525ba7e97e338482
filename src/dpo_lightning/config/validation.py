"""The fail-fast check of the composed config: it runs before any model is loaded and names the key.

It restates no rule. It checks every value against the type its constructor declares (`types.py`), builds what is
cheap to build (the loss, the data module without a tokenizer, a Trainer with the run's loop settings: each checks
its own arguments) and calls the validators of what is not (the LM head's tile sizes, the packed layout's
attention, the model's quantization and source), turning their errors into a `ConfigError`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from ..core.batches import check_packed_attention
from ..core.errors import UsageError
from ..core.hub import check_hub_reachable, is_hub_id, looks_local
from ..core.lm_head import check_tile_size
from ..core.reference import check_reference_sync
from ..models.loading import check_quantization, run_final_model
from .recipes import recipe_warnings
from .types import check_types

log = logging.getLogger(__name__)


class ConfigError(UsageError):
    pass


# The groups whose values are checked against their constructors' types (train.yaml's; a missing one is skipped).
TYPED_GROUPS = ("loss", "data", "model", "peft", "module", "optimizer", "scheduler", "trainer", "callbacks", "logger")
# A Trainer's settings of the machine (checked when the run starts on it), replaced to check the rest here.
MACHINE = {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto", "precision": None, "plugins": None}


def validate_config(cfg: DictConfig, model_source: bool = True, hub: bool = True) -> list[str]:
    """Raise a `ConfigError` naming the key of a setting that cannot work; log (and return) the warnings of those
    that can but are likely mistakes (a learning rate far from the model's recipe, a visible GPU left unused).
    `model_source=False`: the model's folder is not checked (a later stage's, which an earlier stage writes);
    `hub=False`: hub ids are checked for their form only, the Hub is not asked (`+plan_only=true`)."""
    for group in TYPED_GROUPS:
        _check(check_types, cfg.get(group), group)
    loss = _build(cfg.loss) if cfg.get("loss") else None
    if cfg.get("trainer"):
        check_trainer(cfg.trainer)
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
    check_data_sources(cfg.data, hub)
    if model_source:
        validate_model_source(cfg.model, hub)
    warnings = recipe_warnings(cfg)
    for warning in warnings:
        log.warning(warning)
    return warnings


def check_trainer(trainer: DictConfig) -> None:
    """Lightning's own checks of the loop settings (`trainer.max_steps=-3`, `max_epochs`, `val_check_interval`,
    ...): a Trainer built with them, on the CPU, without callbacks or loggers (no model, no process started)."""
    settings = {k: v for k, v in OmegaConf.to_container(trainer, resolve=True).items() if k != "_target_"}
    settings.update(MACHINE, logger=False, callbacks=[], enable_checkpointing=False, enable_progress_bar=False)
    settings.update(enable_model_summary=False, default_root_dir=None)
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)  # its "GPU available" lines are the real trainer's to say
    try:
        L.Trainer(**{k: v for k, v in settings.items() if v is not None or k not in MACHINE})
    except (MisconfigurationException, ValueError, TypeError) as e:
        raise ConfigError(f"trainer: {e}".replace("`", "")) from None
    finally:
        lightning_log.setLevel(level)


def validate_model_source(model: DictConfig, hub: bool = True) -> None:
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
        elif hub:
            check_hub_reachable("model.name_or_path", str(name))


def check_data_sources(data: DictConfig, hub: bool = True) -> None:
    """A Hub dataset of any source (data.path, data.val_path, a mixture's sources): the Hub reachable now."""
    nodes = [(f"data.sources.{k}", v) for k, v in (data.get("sources") or {}).items()] or [("data", data)]
    for key, node in nodes:
        for name in ("path", "val_path"):
            value = node.get(name)
            if hub and value and is_hub_id(str(value)) and not str(value).startswith("builtin:"):
                check_hub_reachable(f"{key}.{name}", str(value), kind="dataset")


def _build(node: DictConfig, **kwargs) -> object:
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:  # the constructor's own error, which names the key
        cause = e.__cause__ if isinstance(e.__cause__, (ValueError, FileNotFoundError)) else e
        raise ConfigError(str(cause)) from None


def _check(validator, *args) -> None:
    try:
        validator(*args)
    except ConfigError:
        raise
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(str(e)) from None
