"""`train(cfg)`: everything built from the composed config, then `Trainer.fit`, then `metrics.json`."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import lightning as L
from filelock import FileLock
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, compose_config, validate_config, validate_model_source
from ..config.memory import plan_memory
from ..config.plan import Stage, describe_plan, planned_gpu
from ..config.recipes import describe_trainer, is_sft
from ..core.hub import push_to_hub
from ..core.redaction import install_log_redaction, redact, redact_files
from ..evaluation.model_card import write_model_card
from ..lightning.checkpointing import resumable_checkpoint

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job (after the stages `before` it, each a training job of its own); return the final value
    of every logged metric (also written to metrics.json). Before anything trains or loads: every stage's config is
    composed and the run's checked, and the plan is logged and saved as plan.txt (`+plan_only=true` stops there)."""
    install_log_redaction()
    stages = planned_stages(cfg)
    hub = not cfg.get("plan_only")  # a plan for another machine: hub ids checked for their form, the Hub not asked
    for i, stage in enumerate(stages[:-1]):  # an earlier stage writes a later one's model: not checked here
        validate_config(stage.cfg, model_source=i == 0 or finished(stages[i - 1].folder), hub=hub)
    validate_config(cfg, hub=hub)
    plan = describe_plan(stages, planned_gpu(cfg))
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.txt").write_text(plan + "\n")
    log.info("%s", plan)
    if cfg.get("plan_only"):
        return {}
    for stage in stages[:-1]:
        train_stage(stage)
    if len(stages) > 1:  # this run starts from the last stage's final policy, its reference too
        cfg.model.init_from = str(stages[-2].folder)
        validate_model_source(cfg.model)
    return fit(cfg)


def fit(cfg: DictConfig) -> dict[str, float]:
    """One checked training job: the data read first (a bad row fails before any weight loads), then the model
    and everything else built from the config, `Trainer.fit`, metrics.json, the model card."""
    log.info(describe_trainer(cfg))
    plan_memory(cfg)  # on one GPU: the run as configured, the low-memory path, or an error with the numbers
    L.seed_everything(cfg.seed, workers=True)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    resolved = save_config(cfg, out)

    datamodule = instantiate(cfg.data, tokenizer=None)
    datamodule.read()
    loss = instantiate(cfg.loss) if cfg.get("loss") else None
    loaded = instantiate(cfg.model)
    datamodule.use_tokenizer(loaded.tokenizer)
    policy = instantiate(cfg.peft)(loaded.model) if cfg.get("peft") else loaded.model
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


def planned_stages(cfg: DictConfig) -> list[Stage]:
    """The stages of `cfg.before` (name -> overrides), composed but not trained, then the run itself. A stage is
    composed from the run's command-line overrides plus its own; one with a loss of its own (the SFT stage) takes
    none of the run's `loss` overrides, which are the DPO stage's. Each trains in <run>/<name>/; in a multirun,
    in <sweep dir>/stages/<name>-<hash of its overrides>/, so the jobs of a sweep over the DPO stage's settings
    (loss.beta=0.01,0.1,0.5) share one SFT stage, trained once."""
    out, stages = Path(cfg.paths.output_dir), []
    wanted = cfg.get("before") or {}
    if wanted:
        if not HydraConfig.initialized():
            raise ConfigError(
                f"before={OmegaConf.to_container(wanted)}: the stages are composed from the run's command-line "
                "overrides, so run it through train.py (or dpo-train); from Python, set before=null and train each "
                "stage yourself"
            )
        hydra = HydraConfig.get()
        own = [o for o in hydra.overrides.task if not _key(o).startswith(("hydra.", "before", "plan"))]
        shared = hydra.mode == RunMode.MULTIRUN
        previous: Path | None = None
        for name, overrides in wanted.items():
            start = [f"model.init_from={previous}"] if previous is not None else []
            runs_own = [o for o in own if not _key(o).startswith("loss")]
            stage_cfg = compose_config(hydra.job.config_name, [*runs_own, *overrides, *start, "before=null"])
            if not is_sft(stage_cfg):  # a stage that trains the run's loss takes the run's loss settings too
                runs_own = own
            keyed = [*runs_own, *overrides, *start]
            digest = hashlib.sha256("\n".join(keyed).encode()).hexdigest()[:8]
            folder = Path(hydra.sweep.dir) / "stages" / f"{name}-{digest}" if shared else out / name
            merged = (
                ["callbacks.export_final.merge_adapter=true"]
                if (stage_cfg.get("callbacks") or {}).get("export_final")
                else []
            )
            stage_cfg = compose_config(  # the next stage starts from its final/: with LoRA, the merged copy
                hydra.job.config_name, [*keyed, *merged, "before=null", "plan.gpu=null", f"paths.output_dir={folder}"]
            )
            stages.append(Stage(str(name), folder, stage_cfg))
            previous = folder
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    stages.append(Stage("this run", out, cfg, choices.get("loss")))
    return stages


def train_stage(stage: Stage) -> None:
    """Train one stage unless it finished already (`resume=true` resumes one that was stopped); a lock keeps two
    jobs of a parallel sweep from training a shared stage twice. A finished stage's checkpoints are removed: the
    next stage starts from its final/."""
    stage.folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(stage.folder) + ".lock"):
        if finished(stage.folder):
            log.info("stage %s: finished, in %s", stage.name, stage.folder)
        else:
            log.info("stage %s: training in %s", stage.name, stage.folder)
            fit(stage.cfg)
        remove_checkpoints(stage.folder)


def finished(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() and (folder / "final").is_dir()


def remove_checkpoints(folder: Path) -> None:
    checkpoints = folder / "checkpoints"
    if finished(folder) and checkpoints.is_dir():
        size = sum(f.stat().st_size for f in checkpoints.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(checkpoints)
        log.info("stage %s finished: its checkpoints removed (%.1f GB; final/ is kept)", folder.name, size / 1e9)


def _key(override: str) -> str:
    return override.split("=")[0].lstrip("+~")


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
    if name and name not in metrics and not cfg.get("plan_only"):
        log.warning("optimized_metric %r was not logged; logged: %s", name, sorted(metrics))
    return metrics.get(name) if name else None
