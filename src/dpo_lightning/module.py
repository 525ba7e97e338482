"""`DPOModule`: the policy, its frozen reference, a preference loss and the metrics, as one LightningModule."""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from lightning import LightningModule
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor, nn
from torch.nn.attention import sdpa_kernel

from . import refcache
from .logprobs import (
    SDPA_BACKENDS, TOKEN_CHUNK, VOCAB_CHUNK, ResponseStates, pair_logps, response_states, token_kl, unwrap,
)
from .losses import LossOutput, PairLogps, PreferenceLoss
from .metrics import PreferenceMetrics
from .models.embedded import default_cache_dir
from .models.lora import is_peft_model


log = logging.getLogger(__name__)


class DPOModule(LightningModule):
    """Trains `policy` with `loss` against `reference` (a frozen copy), or, when `policy` carries a PEFT adapter
    and no reference is given, against the same weights with the adapter disabled (no second copy).

    `optimizer` and `scheduler` are partials (`_partial_: true` in config): `optimizer(params)` and
    `scheduler(optimizer, num_training_steps=...)`. The reference is never trained, never in `train()` mode and
    never written to checkpoints.

    With `precompute_ref`, the reference log-probs of every training and validation pair are computed once at fit
    start (or read from `ref_cache_dir`, shared by runs and sweep jobs; see `refcache`), and a separate reference
    model is then freed. The exact token KL needs the live reference, so train/kl and val/kl are not logged then.
    """

    def __init__(self, policy: nn.Module, loss: PreferenceLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, reference: nn.Module | None = None,
                 fused_head: bool = True, head_chunk_size: int = TOKEN_CHUNK,
                 head_vocab_chunk_size: int = VOCAB_CHUNK, separate_halves: bool = True,
                 compute_kl: bool = True, disable_dropout: bool = True, precompute_ref: bool = False,
                 ref_cache_dir: str | None = None, activation_checkpointing: bool = False,
                 compile: bool = False) -> None:
        super().__init__()
        self.policy, self.reference, self.loss_fn = policy, reference, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.fused_head, self.separate_halves = fused_head, separate_halves
        self.head_chunk_size, self.head_vocab_chunk_size = head_chunk_size, head_vocab_chunk_size
        self.adapter_reference = reference is None and is_peft_model(policy)
        self.has_reference = reference is not None or self.adapter_reference
        if loss.requires_reference and not self.has_reference:
            raise ValueError(f"{type(loss).__name__} needs a reference model (or a PEFT adapter to disable)")
        self.precompute_ref = precompute_ref and self.has_reference
        self.ref_cache_dir = ref_cache_dir
        self.ref_logps: refcache.ReferenceLogps | None = None
        self.compute_kl = compute_kl and self.has_reference and not self.precompute_ref
        if reference is not None:
            reference.requires_grad_(False)
            reference.eval()
        if disable_dropout:  # dropout makes log-probs noisy; DPO implementations turn it off
            for m in policy.modules():
                if isinstance(m, nn.Dropout):
                    m.p = 0.0
        if activation_checkpointing:  # recompute each decoder layer in backward: less memory, ~30% more compute
            unwrap(policy).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if compile:
            compile_layers(policy, reference)
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
        if self.ref_logps is not None:
            chosen, rejected = self.ref_logps.lookup(batch["pair_keys"])
            reference = PairLogps(chosen.to(policy.chosen.dtype), rejected.to(policy.rejected.dtype),
                                  policy.chosen_tokens, policy.rejected_tokens)
        elif self.has_reference:
            with torch.no_grad(), self.reference_model() as ref_model:
                ref_states = response_states(ref_model, batch, self.fused_head, self.separate_halves)
                reference = self._pairs(ref_states)
                if self.compute_kl:
                    kl = token_kl(_detached(states), ref_states, self.head_chunk_size)
        return self.loss_fn(policy, reference), policy, kl

    def _pairs(self, states: ResponseStates) -> PairLogps:
        return pair_logps(states, self.head_chunk_size, self.head_vocab_chunk_size)

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        # Activation checkpointing recomputes attention inside backward: with the same SDPA kernels as the forward
        # (see logprobs.SDPA_BACKENDS), or the recomputed tensors would not match the saved ones.
        with sdpa_kernel(SDPA_BACKENDS):
            super().backward(loss, *args, **kwargs)

    def on_fit_start(self) -> None:
        if self.fused_head and isinstance(self.trainer.strategy, FSDPStrategy):
            # The fused head reads the LM-head weight outside FSDP's own forward; FSDP needs the plain path.
            log.info("FSDP: computing log-probs through the model's own forward (module.fused_head off)")
            self.fused_head = False
        if self.precompute_ref and self.ref_logps is None:
            self.ref_logps = self._precomputed_reference().to(self.device)
            if self.reference is not None:
                self.reference = None  # its numbers are all cached: free its memory
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()

    def _precomputed_reference(self) -> refcache.ReferenceLogps:
        trainer = self.trainer
        with self.reference_model() as ref:
            key = refcache.fingerprint(ref, f"precision={trainer.precision}|fused_head={self.fused_head}")
        path = Path(self.ref_cache_dir or default_cache_dir()) / "ref_logps" / f"{key}.pt"

        @torch.no_grad()
        def score(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
            batch = self.transfer_batch_to_device(batch, self.device, 0)
            with trainer.precision_plugin.forward_context(), self.reference_model() as ref:
                pairs = self._pairs(response_states(ref, batch, self.fused_head, self.separate_halves))
            return pairs.chosen, pairs.rejected

        loader = trainer.datamodule.all_pairs_dataloader()
        return refcache.load_or_compute(path, score, loader, trainer.global_rank, trainer.world_size)

    @property
    def reference_available(self) -> bool:
        """Whether a reference model can run now (false without one, or once precompute_ref has freed it)."""
        return self.reference is not None or self.adapter_reference

    @contextmanager
    def reference_model(self) -> Iterator[nn.Module]:
        if self.reference is not None:
            yield self.reference
        elif self.adapter_reference:
            with self.policy.disable_adapter():
                yield self.policy
        else:
            raise RuntimeError("no reference model to run: a reference-free loss with module.compute_kl=false, or "
                               "module.precompute_ref=true, which frees it once its log-probs are cached")

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

    def configure_gradient_clipping(self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
                                    gradient_clip_algorithm: str | None = None) -> None:
        # FSDP shards the gradients, so their norm is FSDP's own collective (Lightning's default refuses here).
        if gradient_clip_val and (gradient_clip_algorithm or "norm") == "norm" and isinstance(self.trainer.strategy, FSDPStrategy):
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

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


def compile_layers(*models: nn.Module | None) -> None:
    """torch.compile each decoder layer in place (parameter names unchanged; identical layers share one compiled
    graph, and `dynamic=True` avoids a recompile for every new sequence length)."""
    for model in models:
        if model is None:
            continue
        layers = getattr(unwrap(model).base_model, "layers", None)
        for layer in (layers if layers is not None else [unwrap(model)]):
            layer.compile(dynamic=True)


def _detached(states: ResponseStates) -> ResponseStates:
    return ResponseStates(states.hidden.detach(), states.head, states.targets, states.rows, states.n_rows)


__all__ = ["DPOModule"]
