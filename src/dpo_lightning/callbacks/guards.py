"""`NonFiniteGuard`: a NaN or inf loss or gradient is caught at its step, never trained on."""

from __future__ import annotations

import logging

import torch
from lightning import Callback, LightningModule, Trainer

log = logging.getLogger(__name__)


class NonFiniteError(RuntimeError):
    pass


class NonFiniteGuard(Callback):
    """`action=stop` (default): raise naming the optimizer step and batch; no update is applied, so the last good
    checkpoint stays the last one. `action=skip`: drop that update (gradients cleared, so the optimizer leaves every
    weight as it was), count it as `train/skipped_steps`, and go on."""

    def __init__(self, action: str = "stop") -> None:
        if action not in ("stop", "skip"):
            raise ValueError(f"callbacks.non_finite_guard.action must be stop|skip, got {action!r}")
        self.action = action
        self.skipped = 0
        self.batch_idx = -1

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.batch_idx = batch_idx

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        loss = pl_module.last_loss
        tensors = ([("loss", loss)] if loss is not None else []) + [
            (name, p.grad) for name, p in pl_module.named_parameters() if p.grad is not None
        ]
        if not tensors:
            return
        finite = torch.stack([torch.isfinite(t).all() for _, t in tensors])
        if bool(finite.all()):  # one device sync per optimizer step
            return
        bad = [name for (name, _), ok in zip(tensors, finite.tolist()) if not ok][:4]
        loss = float(loss) if loss is not None else None
        where = f"optimizer step {trainer.global_step} (epoch {trainer.current_epoch}, batch {self.batch_idx})"
        what = f"non-finite {', '.join(bad)} (loss = {loss})"
        if self.action == "stop":
            raise NonFiniteError(
                f"{what} at {where}; stopping before the update. The last checkpoint is intact; "
                "lower the learning rate, check the data, or set callbacks.non_finite_guard.action=skip"
            )
        for p in pl_module.parameters():
            p.grad = None  # optimizers leave parameters without a gradient untouched
        pl_module.train_metrics.reset()  # the skipped micro-batches' values are not logged
        self.skipped += 1
        log.warning("skipped the update of %s: %s (%d skipped so far)", where, what, self.skipped)
        pl_module.log("train/skipped_steps", float(self.skipped), on_step=True, on_epoch=False)

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = state_dict.get("skipped", 0)
