"""`DPOModule`: the policy, its frozen reference, a preference loss and the metrics, as one LightningModule."""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from lightning import LightningModule
from torch import Tensor, nn

from .logprobs import ResponseStates, response_states, sequence_logps, token_kl
from .losses import LossOutput, PairLogps, PreferenceLoss
from .metrics import PreferenceMetrics
from .models.lora import is_peft_model


class DPOModule(LightningModule):
    """Trains `policy` with `loss` against `reference` (a frozen copy), or, when `policy` carries a PEFT adapter
    and no reference is given, against the same weights with the adapter disabled (no second copy).

    `optimizer` and `scheduler` are partials (`_partial_: true` in config): `optimizer(params)` and
    `scheduler(optimizer, num_training_steps=...)`. The reference is never trained, never in `train()` mode and
    never written to checkpoints.
    """

    def __init__(self, policy: nn.Module, loss: PreferenceLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, reference: nn.Module | None = None,
                 fused_head: bool = True, head_chunk_size: int = 1024, separate_halves: bool = True,
                 compute_kl: bool = True, disable_dropout: bool = True) -> None:
        super().__init__()
        self.policy, self.reference, self.loss_fn = policy, reference, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.fused_head, self.head_chunk_size, self.separate_halves = fused_head, head_chunk_size, separate_halves
        self.adapter_reference = reference is None and is_peft_model(policy)
        self.has_reference = reference is not None or self.adapter_reference
        if loss.requires_reference and not self.has_reference:
            raise ValueError(f"{type(loss).__name__} needs a reference model (or a PEFT adapter to disable)")
        self.compute_kl = compute_kl and self.has_reference
        if reference is not None:
            reference.requires_grad_(False)
            reference.eval()
        if disable_dropout:  # dropout makes log-probs noisy; DPO implementations turn it off
            for m in policy.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        policy.train()  # from_pretrained returns eval mode, and Lightning keeps modules' modes as they are
        self.train_metrics = PreferenceMetrics()
        self.val_metrics = PreferenceMetrics()
        self.strict_loading = False  # checkpoints hold no reference weights
        self.validated_at_step = -1
        self.last_loss: Tensor | None = None  # the last micro-batch's loss (on device), for the non-finite guard

    # -- the step ----------------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor]) -> tuple[LossOutput, PairLogps, Tensor | None]:
        states = response_states(self.policy, batch, self.fused_head, self.separate_halves)
        policy = self._pairs(states)
        reference, kl = None, None
        if self.has_reference:
            with torch.no_grad(), self.reference_model() as ref_model:
                ref_states = response_states(ref_model, batch, self.fused_head, self.separate_halves)
                reference = self._pairs(ref_states)
                if self.compute_kl:
                    kl = token_kl(_detached(states), ref_states, self.head_chunk_size)
        return self.loss_fn(policy, reference), policy, kl

    def _pairs(self, states: ResponseStates) -> PairLogps:
        seq = sequence_logps(states, self.head_chunk_size)
        half = states.n_rows // 2
        return PairLogps(seq.logps[:half], seq.logps[half:], seq.tokens[:half], seq.tokens[half:])

    @contextmanager
    def reference_model(self) -> Iterator[nn.Module]:
        if self.reference is not None:
            yield self.reference
        elif self.adapter_reference:
            with self.policy.disable_adapter():
                yield self.policy
        else:
            raise RuntimeError("this run has no reference model (a reference-free loss with module.compute_kl=false)")

    def _update(self, metrics: PreferenceMetrics, batch: dict[str, Tensor]) -> Tensor:
        out, policy, kl = self(batch)
        metrics.update(out.losses, out.chosen_rewards, out.rejected_rewards, policy.chosen, policy.rejected, kl)
        return out.losses.mean()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._update(self.train_metrics, batch)
        self.last_loss = loss.detach()
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Called once per optimizer step, after all accumulated micro-batches: log their exact aggregate.
        self._log(self.train_metrics, "train", on_step=True)
        self.log("train/lr", optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._update(self.val_metrics, batch)

    def on_validation_epoch_end(self) -> None:
        self._log(self.val_metrics, "val", on_step=False)
        if not self.trainer.sanity_checking:
            self.validated_at_step = self.trainer.global_step

    def _log(self, metrics: PreferenceMetrics, prefix: str, on_step: bool) -> None:
        if metrics.update_count == 0:  # e.g. a step the non-finite guard skipped
            return
        values = metrics.compute()  # reduced across ranks by torchmetrics
        metrics.reset()
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, on_step=on_step, on_epoch=not on_step,
                      batch_size=1, sync_dist=False)

    # -- modes, optimizers, checkpoints --------------------------------------------------------------------
    def train(self, mode: bool = True) -> "DPOModule":
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()
        return self

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory([p for p in self.policy.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, num_training_steps=int(self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("reference.")}
        checkpoint["rng_states"] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:  # resume with the random state the interrupted run had at its checkpoint
            torch.set_rng_state(states["torch"])
            random.setstate(states["python"])
            if states["cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])


def _detached(states: ResponseStates) -> ResponseStates:
    return ResponseStates(states.hidden.detach(), states.head, states.targets, states.rows, states.n_rows)


__all__ = ["DPOModule"]
