"""Optimizers and learning-rate schedules: `configure_optimizers` for every module, and the warmup schedules built
as `_partial_` targets: `schedule(optimizer, num_training_steps)`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

DECAYS = {
    "linear": lambda progress: max(0.0, 1.0 - progress),
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))),
    "constant": lambda progress: 1.0,
}


def warmup_schedule(
    optimizer: Optimizer,
    num_training_steps: int,
    warmup_ratio: float = 0.1,
    warmup_steps: int | None = None,
    decay: str = "linear",
) -> LambdaLR:
    """Linear warmup from 0 over `warmup_steps` (default: `warmup_ratio` of all steps), then `decay` to the end."""
    if decay not in DECAYS:
        raise ValueError(f"scheduler.decay must be one of {sorted(DECAYS)}, got {decay!r}")
    warmup = warmup_steps if warmup_steps is not None else int(warmup_ratio * num_training_steps)
    shape = DECAYS[decay]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return shape((step - warmup) / max(1, num_training_steps - warmup))

    return LambdaLR(optimizer, factor)


def configure_optimizers(
    model: nn.Module, optimizer: Callable[..., Optimizer], scheduler: Callable[..., Any] | None, trainer: Any
) -> Any:
    """Lightning's `configure_optimizers` answer: the optimizer over the trainable parameters, and the schedule
    stepped once per optimizer step over the run's estimated steps."""
    built = optimizer([p for p in model.parameters() if p.requires_grad])
    if scheduler is None:
        return built
    schedule = scheduler(built, num_training_steps=int(trainer.estimated_stepping_batches))
    return {"optimizer": built, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
