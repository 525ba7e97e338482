"""`NonFiniteGuard`: a NaN or inf loss or gradient is caught at its step, never trained on.

By default the check reads one flag from the device every optimizer step (a host sync). With `module.sync_free`
and a fused optimizer, nothing is read in the step: the flag goes to the optimizer as its `found_inf`, so the fused
kernel itself leaves every weight and moment as they were on a bad step (as under AMP's GradScaler), and the
guard reads what happened at the next logging step (`trainer.log_every_n_steps`) and at the end of training:
`stop` then raises naming the first bad optimizer step, `skip` counts the skipped ones."""

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
        # a tensor's norm is finite iff all its values are: one multi-tensor kernel for all of them
        finite = torch.stack(
            torch._foreach_norm([t.detach().float() if t.dim() == 0 else t.detach() for _, t in tensors])
        )
        finite = torch.isfinite(finite)
        if getattr(pl_module, "sync_free", False) and _fused(optimizer):
            self._on_device(trainer, optimizer, finite.all())
            return
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

    # -- sync-free: the fused optimizer skips a bad step on the device; the guard reads it at logging steps -------
    def _on_device(self, trainer: Trainer, optimizer, finite) -> None:
        bad = ~finite
        inner = getattr(optimizer, "optimizer", optimizer)
        inner.found_inf = bad.float()  # read by the fused kernel: a bad step changes no weight and no moment
        step = torch.tensor(trainer.global_step, device=bad.device)
        if getattr(self, "_bad_count", None) is None:
            self._bad_count = torch.zeros((), dtype=torch.long, device=bad.device)
            self._first_bad = torch.full((), -1, dtype=torch.long, device=bad.device)
        self._first_bad = torch.where((self._first_bad < 0) & bad, step, self._first_bad)
        self._bad_count = self._bad_count + bad.long()
        every = max(1, trainer.log_every_n_steps)
        if (trainer.global_step + 1) % every == 0 or trainer.global_step + 1 >= trainer.max_steps > 0:
            self._read_device_flags(trainer)

    def _read_device_flags(self, trainer: Trainer) -> None:
        if getattr(self, "_bad_count", None) is None:
            return
        count, first = int(self._bad_count), int(self._first_bad)  # the one read, at a logging step
        self._bad_count.zero_()
        self._first_bad.fill_(-1)
        if count == 0:
            return
        where = f"optimizer step {first} (epoch {trainer.current_epoch})"
        if self.action == "stop":
            raise NonFiniteError(
                f"non-finite loss or gradient at {where}, {count} step(s) since the last check; those updates were "
                "skipped on the device. Lower the learning rate, check the data, or set "
                "callbacks.non_finite_guard.action=skip"
            )
        self.skipped += count
        log.warning(
            "skipped %d update(s) since the last check, the first at %s (%d so far)", count, where, self.skipped
        )

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._read_device_flags(trainer)

    def state_dict(self) -> dict:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict) -> None:
        self.skipped = state_dict.get("skipped", 0)


def _fused(optimizer) -> bool:
    """Whether the optimizer's kernel honours `found_inf` (torch's fused Adam/AdamW/SGD)."""
    inner = getattr(optimizer, "optimizer", optimizer)  # Lightning wraps it
    return bool(getattr(inner, "defaults", {}).get("fused"))
