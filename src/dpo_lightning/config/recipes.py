"""What a run resolves from the machine it is on and the scale of its model, before anything loads.

The configs name these as resolvers, so `config.yaml` records the value they gave (and every one is overridden on
the command line as usual, `optimizer.lr=1e-6`):

- `${machine:accelerator}`: `gpu` where a CUDA device is visible, else `cpu` (trainer=auto, the default);
- `${recipe:<key>}`: the model option's recipe (`model.recipe`, a small table of the scale's numbers, each with its
  source in the model's yaml) for this run:
  - `lr`: `model.recipe.lr` for full fine-tuning, `model.recipe.lora_lr` with `peft=lora|qlora`; `sft_lr`: the SFT
    stage's (`model.recipe.sft_lr`, `sft_lora_lr`);
  - `dtype`: the weights' dtype: `model.recipe.dtype` for full fine-tuning (fp32 master weights under mixed
    precision), `model.recipe.lora_dtype` under an adapter (the frozen base);
  - `precision`: on a GPU `model.recipe.precision` (`bf16-mixed`, or `16-mixed` where the GPU has no bf16), on a
    CPU `32-true`;
  - `accumulation`: micro-batches per optimizer step, so that a step sees `model.recipe.pairs_per_step` pairs
    over every device and node (1 when the recipe sets none);
  - `warmup_ratio`, `warmup_steps`, `activation_checkpointing`: the recipe's own (None where it sets none).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf


@dataclass(frozen=True)
class GPU:
    """A GPU as the recipes and the memory plan see it."""

    name: str
    memory_gib: float
    bf16: bool
    count: int = 1

    def describe(self) -> str:
        return f"{self.count} x {self.name} ({self.memory_gib:.0f} GiB{', bf16' if self.bf16 else ', no bf16'})"


# The GPUs `plan.gpu=` names (memory as the driver reports it), for a plan made on another machine.
KNOWN_GPUS = {
    gpu.name: gpu
    for gpu in (
        GPU("H200", 139, True),
        GPU("H100-80GB", 79, True),
        GPU("A100-80GB", 79, True),
        GPU("A100-40GB", 39, True),
        GPU("L40S", 44, True),
        GPU("A10G", 22, True),
        GPU("L4", 22, True),
        GPU("RTX4090", 24, True),
        GPU("V100-32GB", 32, False),
        GPU("T4", 15, False),
    )
}
_assumed: GPU | None = None  # set by `assumed_gpu`: the machine a plan is made for


@contextmanager
def assumed_gpu(gpu: GPU | None) -> Iterator[None]:
    """Within it, the resolvers and the memory plan see `gpu` instead of this machine (None: this machine)."""
    global _assumed
    previous, _assumed = _assumed, gpu if gpu is not None else _assumed
    try:
        yield
    finally:
        _assumed = previous


def cuda_visible() -> bool:
    return _assumed is not None or torch.cuda.is_available()


def bf16_supported() -> bool:
    return _assumed.bf16 if _assumed is not None else torch.cuda.is_bf16_supported()


def this_gpu() -> GPU | None:
    """The GPU runs are planned for: an assumed one, else the first visible CUDA device, else None."""
    if _assumed is not None:
        return _assumed
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return GPU(props.name, props.total_memory / 2**30, torch.cuda.is_bf16_supported(), torch.cuda.device_count())


def machine(key: str) -> str:
    if key != "accelerator":
        raise ValueError(f"${{machine:{key}}}: the machine resolver knows only `accelerator`")
    return "gpu" if cuda_visible() else "cpu"


def _recipe_of(root: DictConfig) -> DictConfig:
    recipe = (root.get("model") or {}).get("recipe")
    if recipe is None:
        raise ValueError(
            "the model option has no `recipe:` (its scale's learning rate, precision, batch...): add one to its yaml "
            "(see conf/model/smollm2_135m.yaml) or set the values that read it (optimizer.lr, trainer.precision, ...)"
        )
    return recipe


def uses_adapter(root: DictConfig) -> bool:
    return bool(root.get("peft"))


def recipe(key: str, *, _root_: DictConfig) -> Any:
    r = _recipe_of(_root_)
    if key == "lr":
        return float(r.lora_lr if uses_adapter(_root_) else r.lr)
    if key == "sft_lr":  # the SFT stage's (stage=sft)
        return float(r.sft_lora_lr if uses_adapter(_root_) else r.sft_lr)
    if key == "dtype":
        return str(r.get("lora_dtype", r.dtype) if uses_adapter(_root_) else r.dtype)
    if key == "precision":
        if str(_root_.trainer.accelerator) != "gpu":
            return "32-true"
        wanted = str(r.get("precision", "bf16-mixed"))
        if wanted.startswith("bf16") and cuda_visible() and not bf16_supported():
            return wanted.replace("bf16", "16")
        return wanted
    if key == "accumulation":
        return accumulation(r.get("pairs_per_step"), _root_)
    if key in ("warmup_ratio", "warmup_steps", "activation_checkpointing"):
        return r.get(key)
    known = "lr, sft_lr, dtype, precision, accumulation, warmup_ratio, warmup_steps, activation_checkpointing"
    raise ValueError(f"${{recipe:{key}}}: unknown key ({known})")


def processes(trainer: DictConfig) -> int:
    """How many processes train: devices (`auto` or -1: every visible GPU, or one CPU process) x nodes."""
    devices = trainer.get("devices", 1)
    if devices in ("auto", -1, "-1"):
        gpu = this_gpu() if str(trainer.get("accelerator")) == "gpu" else None
        devices = gpu.count if gpu is not None else 1
    elif isinstance(devices, str):
        devices = int(devices) if devices.isdigit() else len(devices.split(","))
    elif not isinstance(devices, int):
        devices = len(devices)
    return max(1, int(devices)) * max(1, int(trainer.get("num_nodes", 1) or 1))


def accumulation(pairs_per_step: int | None, root: DictConfig) -> int:
    """Micro-batches per optimizer step for `pairs_per_step` pairs over every process (at least 1)."""
    if not pairs_per_step:
        return 1
    per_step = int(root.data.batch_size) * processes(root.trainer)
    return max(1, math.ceil(int(pairs_per_step) / per_step))


def visible_gpus() -> str:
    """What this process sees: the CUDA devices (name, memory, bf16), or none."""
    if _assumed is not None:
        return f"planned for {_assumed.describe()} (plan.gpu)"
    gpu = this_gpu()
    return "no CUDA device visible" if gpu is None else f"CUDA device(s) visible: {gpu.describe()}"


def describe_trainer(cfg: DictConfig) -> str:
    """The trainer a run resolved to and why (the first line of its log)."""
    trainer = cfg.trainer
    given = str(OmegaConf.to_container(trainer, resolve=False).get("accelerator"))
    why = "trainer=auto: " if "${machine:" in given else f"trainer.accelerator={given}, forced; "
    return (
        f"Trainer: {trainer.accelerator}, precision {trainer.precision}, {trainer.devices} device(s), "
        f"{trainer.accumulate_grad_batches} batch(es) a step ({why}{visible_gpus()})"
    )


def recipe_warnings(cfg: DictConfig) -> list[str]:
    """Settings far from the model's recipe, or a visible GPU left unused: said before anything loads."""
    out = []
    recipe_node = (cfg.get("model") or {}).get("recipe")
    optimizer = cfg.get("optimizer") or {}
    if recipe_node is not None and "lr" in optimizer:
        sft = is_sft(cfg)  # each stage against its own recipe: the SFT stage's rate is not DPO's
        key = ("sft_" if sft else "") + ("lora_lr" if uses_adapter(cfg) else "lr")
        wanted, given = float(recipe_node[key]), float(optimizer.lr)
        if given > 10 * wanted or given < wanted / 10:
            kind = ("SFT " if sft else "DPO ") + ("with an adapter" if uses_adapter(cfg) else "full fine-tuning")
            size = f"{float(recipe_node.parameters) / 1e9:.2g}B" if recipe_node.get("parameters") else "this"
            effect = "a step this large can wreck it in a few steps" if given > wanted else "it will barely move"
            out.append(
                f"optimizer.lr={given:g} is far from this model's recipe for {kind} (model.recipe.{key}={wanted:g}, "
                f"for a {size}-parameter model): {effect}"
            )
    if str(cfg.trainer.get("accelerator")) == "cpu" and cuda_visible():
        out.append(
            f"{visible_gpus()}, but this run trains on the CPU (trainer.accelerator=cpu): trainer=auto or "
            "trainer=gpu uses the GPU"
        )
    return out


def is_sft(cfg: DictConfig) -> bool:
    """The run is a supervised fine-tuning stage (stage=sft, or loss=sft)."""
    return str((cfg.get("loss") or {}).get("_target_", "")).endswith("SFTLoss")


def register() -> None:
    """Register the resolvers (once per process; every config of conf/ reads them)."""
    if not OmegaConf.has_resolver("machine"):
        OmegaConf.register_new_resolver("machine", machine)
    if not OmegaConf.has_resolver("recipe"):
        OmegaConf.register_new_resolver("recipe", recipe)
