"""`PolicyModule`: what every training module owes the framework, declared in one place.

`train()` and the callbacks read these from whatever `module=` builds (the DPO module, the reward model's module,
the online loop's): a new module subclasses this and implements its step.

- `trained_model`: the model being trained, at the attribute the subclass names (`trained_model_name`: the DPO
  module's `policy`, the reward module's `reward_model`; `train()` passes it under that name). Read by ExportFinal
  (final/), StepTimer (FLOPs), SampleGenerations and the FSDP / ZeRO-3 export.
- `reference`: a `reference.Reference`, `NoReference()` when there is none. Read by SampleGenerations.
- `last_loss`: the last micro-batch's loss, kept by `remember_loss` in `training_step`. Read by NonFiniteGuard.
- `train_metrics`, `val_metrics`: torchmetrics of sums and counts (set by the subclass), logged here; the guard
  resets the first when it drops an update.
- `validated_at_step`: set at the end of each validation here. Read by `train()`, which validates the final weights
  when Lightning skipped it.
- `sync_free`: from the constructor. Read by NonFiniteGuard (a bad update skipped on the device).
- `configure_model`: under `trainer=fsdp2`, shards the trained model and a frozen reference copy (strategies.py).

What is shared, so no module repeats it: the optimizer and schedule built from their partials, dropout turned
off, the per-optimizer-step logging of the training metrics and the learning rate, the validation metrics at the
end of each validation, and the random state saved in and restored from checkpoints (exact resume).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torchmetrics import Metric

from ..core.reference import NoReference, Reference
from .checkpointing import restore_rng_states, save_rng_states
from .metrics import log_metrics
from .optim import configure_optimizers
from .strategies import FSDP2Strategy


class PolicyModule(LightningModule):
    reference: Reference
    train_metrics: Metric
    val_metrics: Metric

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        disable_dropout: bool = True,
        sync_free: bool = False,
    ) -> None:
        super().__init__()
        setattr(self, self.trained_model_name, model)  # self.policy, self.reward_model
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        if disable_dropout:  # dropout makes log-probs and rewards noisy; DPO implementations turn it off
            for m in model.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        self.reference = NoReference()
        self.last_loss: Tensor | None = None  # the last micro-batch's loss (on the device), for the non-finite guard
        self.validated_at_step = -1
        # No host sync inside a step: the non-finite guard skips bad updates on the device (callbacks/guards.py)
        self.sync_free = sync_free

    @property
    def trained_model(self) -> nn.Module:
        """The model this module trains (the DPO policy, the reward model): what the callbacks export, time and
        check, under its attribute `trained_model_name`."""
        return getattr(self, self.trained_model_name)

    trained_model_name = "policy"

    def remember_loss(self, loss: Tensor) -> Tensor:
        self.last_loss = loss.detach()
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called once per optimizer step, after all accumulated micro-batches: log their exact aggregate.
        log_metrics(self, self.train_metrics, "train", on_step=True)
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    def on_validation_epoch_end(self) -> None:
        log_metrics(self, self.val_metrics, "val", on_step=False)
        if not self.trainer.sanity_checking:
            self.validated_at_step = self.trainer.global_step

    def configure_model(self) -> None:
        # trainer=fsdp2: each decoder layer of the trained model and of a frozen reference copy its own fully_shard
        # unit, this module the root (Lightning's ModelParallelStrategy asks the module to shard itself, here)
        if isinstance(self.trainer.strategy, FSDP2Strategy):
            frozen = self.reference.frozen_model()
            self.trainer.strategy.shard(self, [self.trained_model] + ([frozen] if frozen is not None else []))

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.trained_model, self.optimizer_factory, self.scheduler_factory, self.trainer)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        save_rng_states(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore_rng_states(checkpoint)  # resume with the random state the interrupted run had at its checkpoint
