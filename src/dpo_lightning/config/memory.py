"""How much memory a training run needs, estimated from the config before any weight loads, and the plan that
follows from it on a GPU: the run as configured, the low-memory path, or a clear error saying what to add.

The estimate (bytes, one process):
- weights: every parameter at its dtype (`model.dtype`; 4-bit NF4 under QLoRA, at about 0.55 bytes each);
- trainable: all of them, or LoRA's adapters, `r` x (in + out) per linear layer of each decoder block
  (`model.recipe.hidden_size`, `intermediate_size`, `kv_size`, `layers`), kept in fp32 as peft keeps them;
- gradients: one per trainable parameter at its dtype;
- optimizer: AdamW's (and RMSprop's, Adam's) two moments (one for RMSprop) per trainable parameter, at its dtype
  (torch keeps the states in the parameter's dtype: fp32 master weights give fp32 states);
- reference: a frozen copy of every weight for full fine-tuning with a live reference; nothing under an adapter
  (the base with the adapter disabled) or with `module.precompute_ref` (freed before the first step, after its
  pass; the pass itself, before the optimizer's states exist, needs weights + reference);
- activations: tokens of a micro-batch (`data.batch_size` pairs x chosen and rejected x `data.max_length`) x
  `hidden_size` x `layers`, at 34 bytes per token and layer in 16-bit (Korthikanti et al. 2022, Table 2, with
  flash-style attention: no s^2 term), 2 per token and layer with activation checkpointing (the saved layer inputs)
  plus one layer's 34; twice that in fp32.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import torch
from omegaconf import DictConfig

from .recipes import GPU, this_gpu
from .validation import ConfigError

log = logging.getLogger(__name__)

GiB = 2**30
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
NF4_BYTES = 0.55  # 4 bits a weight, plus the double-quantized scales
MOMENTS = {"AdamW": 2, "Adam": 2, "RMSprop": 1, "SGD": 0}
HEADROOM = 0.9  # of the GPU's memory: the CUDA context, the allocator's fragmentation, the LM head's tiles


@dataclass(frozen=True)
class Shape:
    parameters: float
    hidden_size: int | None = None
    intermediate_size: int | None = None
    kv_size: int | None = None
    layers: int | None = None


@dataclass(frozen=True)
class Setup:
    """What the estimate reads from a config."""

    shape: Shape
    weight_bytes: float
    adapter_rank: int | None  # LoRA's r, or None for full fine-tuning
    moments: int
    live_reference: bool  # a frozen copy held beside the policy
    precompute: bool
    checkpointing: bool
    tokens: int  # per micro-batch
    activation_bytes: int  # 2 (16-bit compute) or 4 (fp32)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    reference: float
    activations: float
    trainable: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference + self.activations

    def describe(self) -> str:
        parts = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer states", self.optimizer),
            ("reference", self.reference),
            ("activations", self.activations),
        ]
        return f"{self.total / GiB:.1f} GiB (" + ", ".join(f"{k} {v / GiB:.1f}" for k, v in parts) + ")"


def lora_parameters(shape: Shape, rank: int) -> float:
    """LoRA's adapters on every linear layer of a Llama-style block: q, o (h -> h), k, v (h -> kv), gate, up
    (h -> i), down (i -> h); r x (in + out) each."""
    h, i, kv, n = shape.hidden_size, shape.intermediate_size, shape.kv_size, shape.layers
    if None in (h, i, kv, n):
        return 0.01 * shape.parameters * rank / 16  # no shape given: about 1% at r 16
    return rank * n * (2 * (h + h) + 2 * (h + kv) + 2 * (h + i) + (i + h))


def estimate(setup: Setup) -> MemoryEstimate:
    s = setup.shape
    weights = s.parameters * setup.weight_bytes
    if setup.adapter_rank:
        trainable = lora_parameters(s, setup.adapter_rank)
        trainable_bytes = 4  # peft keeps adapters in fp32
        weights += trainable * trainable_bytes
    else:
        trainable, trainable_bytes = s.parameters, setup.weight_bytes
    gradients = trainable * trainable_bytes
    optimizer = setup.moments * trainable * trainable_bytes
    reference = s.parameters * setup.weight_bytes if setup.live_reference and not setup.adapter_rank else 0.0
    if setup.precompute:
        reference = 0.0
    activations = 0.0
    if s.hidden_size and s.layers:
        per_layer = 34 * setup.tokens * s.hidden_size * setup.activation_bytes / 2
        saved = 2 * setup.tokens * s.hidden_size * setup.activation_bytes / 2
        activations = per_layer + saved * s.layers if setup.checkpointing else per_layer * s.layers
    return MemoryEstimate(weights, gradients, optimizer, reference, activations, trainable)


def setup_of(cfg: DictConfig) -> Setup | None:
    """The estimate's inputs from a composed config (None when the model's recipe gives no parameter count)."""
    recipe = (cfg.get("model") or {}).get("recipe") or {}
    if not recipe.get("parameters"):
        return None
    shape = Shape(
        float(recipe.parameters),
        recipe.get("hidden_size"),
        recipe.get("intermediate_size"),
        recipe.get("kv_size"),
        recipe.get("layers"),
    )
    model, module, data = cfg.model, cfg.get("module") or {}, cfg.data
    weight_bytes = NF4_BYTES if model.get("quantization") else DTYPE_BYTES.get(str(model.get("dtype", "float32")), 4)
    peft = cfg.get("peft") or {}
    optimizer = str((cfg.get("optimizer") or {}).get("_target_", "AdamW")).rsplit(".", 1)[-1]
    precision = str(cfg.trainer.get("precision", "32-true"))
    loss = cfg.get("loss") or {}
    needs_reference = bool(loss) and not str(loss.get("_target_", "")).endswith(("SimPOLoss", "ORPOLoss", "SFTLoss"))
    return Setup(
        shape=shape,
        weight_bytes=weight_bytes,
        adapter_rank=int(peft.get("r", 16)) if peft else None,
        moments=MOMENTS.get(optimizer, 2),
        live_reference=needs_reference or bool(module.get("compute_kl", True)),
        precompute=bool(module.get("precompute_ref", False)),
        checkpointing=bool(module.get("activation_checkpointing", False)),
        tokens=int(data.batch_size) * 2 * int(data.max_length),
        activation_bytes=2 if precision.startswith(("bf16", "16")) else 4,
    )


@dataclass(frozen=True)
class MemoryPlan:
    """What the planner makes of a run on one GPU: `path` is `fits`, `low_memory` (module.precompute_ref and
    module.activation_checkpointing turned on) or `too_big` (an error saying what to add)."""

    path: str
    message: str


def memory_plan(cfg: DictConfig, gpu: GPU) -> MemoryPlan | None:
    """The estimate of `cfg` against one `gpu` (None: no recipe to estimate from, or a sharded or multi-device
    strategy, which splits it and is not estimated here)."""
    setup = setup_of(cfg)
    if setup is None:
        return None
    strategy = cfg.trainer.get("strategy")
    if strategy not in (None, "auto") or cfg.trainer.get("devices", 1) not in (1, "1"):
        return None
    budget = gpu.memory_gib * GiB * HEADROOM
    full = estimate(setup)
    where = f"{gpu.name} ({gpu.memory_gib:.0f} GiB)"
    if full.total <= budget:
        return MemoryPlan("fits", f"memory: about {full.describe()} on one {where}: fits")
    low = estimate(replace(setup, precompute=True, checkpointing=True))
    if not setup.adapter_rank and low.total <= budget:
        return MemoryPlan(
            "low_memory",
            f"memory: full DPO as configured needs about {full.describe()}, more than one {where} holds: "
            f"taking the low-memory path (module.precompute_ref=true module.activation_checkpointing=true, "
            f"as experiment=low_memory): about {low.describe()}",
        )
    if setup.adapter_rank and setup.weight_bytes > NF4_BYTES:  # LoRA already: the base in 4 bits
        smaller, add = replace(setup, weight_bytes=NF4_BYTES, checkpointing=True), "peft=qlora"
    else:
        smaller = replace(
            setup, adapter_rank=16, live_reference=False, checkpointing=True, weight_bytes=min(setup.weight_bytes, 2)
        )
        add = "peft=lora"
    shards = math.ceil(low.total / budget)
    return MemoryPlan(
        "too_big",
        f"this run needs about {full.describe()}, and {low.total / GiB:.1f} GiB even on the low-memory path "
        f"(experiment=low_memory); one {where} holds {budget / GiB:.0f} GiB of it. Add {add} (about "
        f"{estimate(smaller).total / GiB:.1f} GiB) or shard it: trainer=fsdp trainer.devices={shards} or more GPUs",
    )


def plan_memory(cfg: DictConfig) -> str | None:
    """On one visible GPU: the estimate against its memory. A run that does not fit takes the low-memory path
    (`module.precompute_ref` and `module.activation_checkpointing`, set in `cfg`) where that fits, and stops with
    the numbers and what to add (`peft=lora`, `trainer=fsdp`) where nothing does. Returns what it logged."""
    gpu = this_gpu()
    if gpu is None or str(cfg.trainer.get("accelerator")) != "gpu" or not torch.cuda.is_available():
        return None
    plan = memory_plan(cfg, gpu)
    if plan is None:
        return None
    if plan.path == "too_big":
        raise ConfigError(plan.message)
    if plan.path == "low_memory":
        cfg.module.precompute_ref = True
        cfg.module.activation_checkpointing = True
        log.warning(plan.message)
    else:
        log.info(plan.message)
    return plan.message
