"""The plan of a training run, said before any weight loads: each stage (the SFT stage before DPO, or DPO alone)
with its loss and beta, full weights or LoRA, learning rate, the device and precision, pairs per step, how long,
the memory estimate and which path the memory planner takes; and the one word to plain DPO. train.py logs it and
saves it as `plan.txt` beside `config.yaml`; `+plan_only=true` prints it and stops, and `plan.gpu=H100-80GB` (any
name of `recipes.KNOWN_GPUS`) plans for that GPU from any machine, a laptop included."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from .memory import estimate, memory_plan, setup_of
from .recipes import GPU, KNOWN_GPUS, assumed_gpu, is_sft, processes, this_gpu, uses_adapter, visible_gpus
from .validation import ConfigError

PLAIN_DPO = "experiment=trl"  # TRL DPOTrainer's defaults: loss=dpo, beta 0.1, full weights, no SFT stage


@dataclass(frozen=True)
class Stage:
    """One training job of a run: a stage before it (`before:`), or the run itself (`folder` its output dir)."""

    name: str
    folder: Path
    cfg: DictConfig
    loss_option: str | None = None  # the loss group's option, where Hydra recorded it (the run's own)


def planned_gpu(cfg: DictConfig) -> GPU | None:
    """`plan.gpu`: a GPU of the table, or None (plan for this machine)."""
    name = ((cfg.get("plan") or {}).get("gpu")) or None
    if name is None:
        return None
    if str(name) not in KNOWN_GPUS:
        raise ConfigError(f"plan.gpu={name}: not a GPU this plan knows; one of {', '.join(KNOWN_GPUS)}")
    return KNOWN_GPUS[str(name)]


def describe_plan(stages: list[Stage], gpu: GPU | None = None) -> str:
    """The plan's lines for `stages` (the last is the run itself), resolved for `gpu` (None: this machine)."""
    with assumed_gpu(gpu):
        run = stages[-1].cfg
        lines = [f"Plan ({len(stages)} stage{'s' if len(stages) > 1 else ''}; nothing has loaded yet):"]
        for i, stage in enumerate(stages, 1):
            start = "the model as loaded" if i == 1 else f"stage {i - 1}'s final policy, also its reference"
            if i == 1 and stage.cfg.model.get("init_from"):
                start = f"the run {stage.cfg.model.init_from} (model.init_from)"
            lines.append(f"  {i}. {stage.name} -> {stage.folder}")
            lines.append(f"     {loss_line(stage)}; {weights_line(stage.cfg)}; from {start}")
            lines.append(f"     {steps_line(stage.cfg)}")
            lines.append(f"     {memory_line(stage.cfg)}")
        trainer = run.trainer
        lines.append(
            f"  device: {trainer.accelerator}, precision {trainer.precision}, {processes(trainer)} process(es) "
            f"({visible_gpus() if gpu is None or trainer.accelerator == 'gpu' else 'trainer.accelerator=cpu'})"
        )
        model = run.model.get("name_or_path") or str(run.model._target_).rsplit(".", 1)[-1]
        lines.append(f"  model: {model}; data: {data_line(run)}")
        if stages[-1].cfg.get("loss") and not is_plain_dpo(stages):  # (a reward model has no preference loss)
            lines.append(f"  Plain DPO instead (loss=dpo, full weights, no SFT stage; TRL's defaults): {PLAIN_DPO}")
    return "\n".join(lines)


def loss_line(stage: Stage) -> str:
    loss = stage.cfg.get("loss")
    if not loss:
        return "the module's own loss"
    name = str(loss._target_).rsplit(".", 1)[-1]
    option = f"loss={stage.loss_option}, " if stage.loss_option else ""
    args = [f"beta {loss.beta:g}"] if loss.get("beta") is not None and not is_sft(stage.cfg) else []
    terms = loss.get("terms") or {}  # a mixture: each term's loss and weight
    args += [f"{t} x {term.get('weight', 1.0):g}" for t, term in terms.items()]
    args += [f"alpha {loss.alpha:g}"] if "alpha" in loss else []
    args += [f"label smoothing {loss.label_smoothing:g}"] if loss.get("label_smoothing") else []
    what = "supervised fine-tuning on the chosen answers" if is_sft(stage.cfg) else "preference loss"
    return f"{what} ({option}{name}{': ' + ', '.join(args) if args else ''})"


def weights_line(cfg: DictConfig) -> str:
    lr = float(cfg.optimizer.lr)
    if uses_adapter(cfg):
        peft = cfg.peft
        kind = "QLoRA" if cfg.model.get("quantization") else "LoRA"
        return f"{kind} r {peft.get('r')} (the base frozen), lr {lr:g}"
    return f"full fine-tuning, lr {lr:g}"


def steps_line(cfg: DictConfig) -> str:
    trainer, data = cfg.trainer, cfg.data
    per_step = int(data.batch_size) * int(trainer.accumulate_grad_batches) * processes(trainer)
    steps = int(trainer.get("max_steps", -1))
    length = f"{steps} steps" if steps > 0 else f"{trainer.max_epochs} epoch(s)"
    return (
        f"{per_step} pairs a step ({data.batch_size} a batch x {trainer.accumulate_grad_batches} accumulated x "
        f"{processes(trainer)} process(es)); {length}; pairs up to {data.max_length} tokens"
    )


def memory_line(cfg: DictConfig) -> str:
    setup = setup_of(cfg)
    if setup is None:
        return "memory: not estimated (the model option gives no recipe.parameters)"
    gpu = this_gpu()
    if str(cfg.trainer.accelerator) == "gpu" and gpu is not None:
        plan = memory_plan(cfg, gpu)
        if plan is None:
            return f"memory: about {estimate(setup).describe()} before sharding (a multi-device strategy splits it)"
        path = {"fits": "", "low_memory": " [low-memory path]", "too_big": " [does not fit: the run would stop]"}
        return ("" if plan.message.startswith("memory") else "memory: ") + plan.message + path[plan.path]
    return f"memory: up to about {estimate(setup).describe()} of RAM, every pair at data.max_length"


def data_line(cfg: DictConfig) -> str:
    data = cfg.data
    sources = data.get("sources")
    if sources:
        return "a mixture of " + ", ".join(f"{k} ({v.get('path')})" for k, v in sources.items())
    template = data.get("chat_template")
    return f"{data.get('path')} (chat_template {template})"


def is_plain_dpo(stages: list[Stage]) -> bool:
    cfg = stages[-1].cfg
    target = str((cfg.get("loss") or {}).get("_target_", ""))
    return len(stages) == 1 and target.endswith(".DPOLoss") and not uses_adapter(cfg)
