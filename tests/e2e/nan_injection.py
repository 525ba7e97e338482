"""A test helper callback: makes one training batch's loss NaN (beta = NaN for that batch only)."""

from __future__ import annotations

from lightning import Callback


class InjectNaN(Callback):
    def __init__(self, at_batch: int = 2) -> None:
        self.at_batch = at_batch
        self.beta = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_batch and self.beta is None:
            self.beta = pl_module.loss_fn.beta
            pl_module.loss_fn.beta = float("nan")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self.beta is not None:
            pl_module.loss_fn.beta = self.beta
