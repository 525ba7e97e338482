"""`train(cfg)`: everything built from the composed config, then `Trainer.fit`, then `metrics.json`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ..config import compose_config, validate_config
from ..config.memory import plan_memory
from ..config.recipes import describe_trainer
from ..core.hub import push_to_hub
from ..core.redaction import install_log_redaction, redact, redact_files
from ..evaluation.model_card import write_model_card
from ..lightning.checkpointing import resumable_checkpoint

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job (after the stages `before` it, each a training job of its own); return the final value
    of every logged metric (also written to metrics.json)."""
    install_log_redaction()
    last_stage = train_stages_before(cfg)
    if last_stage is not None:  # this run starts from the last stage's final policy, its reference too
        cfg.model.init_from = str(last_stage)
    log.info(describe_trainer(cfg))
    validate_config(cfg)
    plan_memory(cfg)  # on one GPU: the run as configured, the low-memory path, or an error with the numbers
    L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = save_config(cfg, out)

    loss = instantiate(cfg.loss) if cfg.get("loss") else None
    loaded = instantiate(cfg.model)
    policy = instantiate(cfg.peft)(loaded.model) if cfg.get("peft") else loaded.model
    datamodule = instantiate(cfg.data, tokenizer=loaded.tokenizer)
    # The module builds its reference (core/reference.build_reference): a frozen copy of the policy as loaded, or the
    # adapter disabled; `module.reference` (a model config, e.g. the online loop's initial policy) loads another.
    extra = {"loss": loss} if loss is not None else {}  # a reward model's module has its own loss
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    name = get_class(cfg.module._target_).trained_model_name  # the module's own name for it: policy, reward_model
    extra[name] = policy
    module = instantiate(cfg.module, optimizer=instantiate(cfg.optimizer), scheduler=scheduler, **extra)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    for logger in loggers:  # the resolved config, secrets masked: W&B config, MLflow params, CSV hparams.yaml
        logger.log_hyperparams(resolved)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, default_root_dir=str(out)
    )

    ckpt_path = cfg.get("ckpt_path") or (newest_checkpoint(out) if cfg.get("resume") else None)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if module.validated_at_step != trainer.global_step and trainer.limit_val_batches:
        # Lightning skips validation when max_steps ends an epoch early: measure the final policy anyway.
        trainer.validate(module, datamodule=datamodule, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    metrics = dict(sorted(metrics.items()))
    if trainer.is_global_zero:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        log.info("Metrics: %s", json.dumps(metrics))
        if (out / "final").is_dir():
            write_model_card(out)
            hub = cfg.get("hub") or {}
            if hub.get("repo_id"):  # the token from the live config (the saved one is masked)
                push_to_hub(out, **hub)
        log.info("Outputs in %s", out)
    return metrics


def train_stages_before(cfg: DictConfig) -> Path | None:
    """Train the stages of `cfg.before` (name -> overrides), each in <run>/<name>/, composed from the run's own
    command-line overrides plus the stage's; a stage that finished is not trained again (`resume=true` resumes one
    that was stopped). Returns the last stage's folder (None without stages)."""
    stages = cfg.get("before") or {}
    if not stages:
        return None
    if not HydraConfig.initialized():
        raise ValueError(
            f"before={OmegaConf.to_container(stages)}: the stages are composed from the run's command-line overrides, "
            "so run it through train.py (or dpo-train); from Python, set before=null and train each stage yourself"
        )
    hydra = HydraConfig.get()
    own = [o for o in hydra.overrides.task if not o.split("=")[0].lstrip("+~").startswith(("hydra.", "before"))]
    out, previous = Path(cfg.paths.output_dir), None
    for name, overrides in stages.items():
        folder = out / name
        if (folder / "metrics.json").is_file() and (folder / "final").is_dir():
            log.info("stage %s: finished, in %s", name, folder)
        else:
            log.info("stage %s: training in %s (%s)", name, folder, " ".join(overrides))
            start = [f"model.init_from={previous}"] if previous is not None else []
            stage = [*own, *overrides, *start, "before=null", f"paths.output_dir={folder}"]
            train(compose_config(hydra.job.config_name, stage))
        previous = folder
    return previous


def newest_checkpoint(out: Path) -> str | None:
    """What `resume=true` continues from: the newest whole checkpoint of the run (damaged ones skipped, with a
    warning), else nothing."""
    found = resumable_checkpoint(out / "checkpoints")
    if found is None:
        log.warning("resume=true, but %s holds no whole checkpoint: starting from the beginning", out / "checkpoints")
    return found


def save_config(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """The resolved config as `config.yaml`, secrets masked (returned: the loggers get it too); Hydra's own copies
    under .hydra/ are masked too."""
    resolved = redact(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.save(OmegaConf.create(resolved), out / "config.yaml")
    redact_files([out / ".hydra" / name for name in ("config.yaml", "overrides.yaml", "hydra.yaml")])
    overrides = out / ".hydra" / "overrides.yaml"
    if overrides.is_file():
        log.info("Overrides: %s", " ".join(OmegaConf.load(overrides)) or "(none)")
    return resolved


def optimized_value(cfg: DictConfig, metrics: dict[str, Any]) -> float | None:
    """The value a Hydra sweeper optimizes (`optimized_metric`), or None when it was not logged."""
    name = cfg.get("optimized_metric")
    if name and name not in metrics:
        log.warning("optimized_metric %r was not logged; logged: %s", name, sorted(metrics))
    return metrics.get(name) if name else None
