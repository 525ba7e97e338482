"""References that run a model every step: a frozen copy, one that follows the policy (TR-DPO), the adapter-off
policy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..batches import PairBatch
from ..logprobs import PairScorer, ResponseStates
from ..losses import PairLogps
from .base import Reference, ReferenceScores


class LiveReference(Reference):
    """A reference that runs a model every step."""

    has_token_kl = True

    @property
    def can_run(self) -> bool:
        return True

    @torch.no_grad()
    def score(
        self, batch: PairBatch, scorer: PairScorer, policy: PairLogps, policy_states: ResponseStates | None = None
    ) -> ReferenceScores:
        with self.run() as model:
            states = scorer.states(model, batch)
            logps = scorer.pairs(states)
            return ReferenceScores(logps, scorer.kl(policy_states, states) if policy_states is not None else None)


class FrozenCopy(LiveReference):
    """A frozen copy of the starting model, held beside the policy (replicated or sharded with it)."""

    holds_weights = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenCopy:
        return super().train(False)  # always eval (no dropout), whatever Lightning asks

    @contextmanager
    def run(self) -> Iterator[nn.Module]:
        yield self.model

    def frozen_model(self) -> nn.Module:
        return self.model


class SyncedCopy(FrozenCopy):
    """TR-DPO (Gorbatovski et al. 2024, "Learn Your Reference Model for Real Good Alignment"): after every `every`
    optimizer steps the reference becomes alpha * policy + (1 - alpha) * reference, parameter by parameter (alpha = 1:
    a hard copy of the policy; alpha = 0: the plain fixed reference). TRL's sync_ref_model, ref_model_mixup_alpha,
    ref_model_sync_steps."""

    moves = True

    def __init__(self, model: nn.Module, every: int, alpha: float) -> None:
        super().__init__(model)
        check_reference_sync(every, alpha)
        self.every, self.alpha = every, float(alpha)

    def after_optimizer_step(self, policy: nn.Module, step: int) -> bool:
        if step % self.every:
            return False
        self.sync(policy)
        return True

    @torch.no_grad()
    def sync(self, policy: nn.Module) -> None:
        mine, theirs = dict(self.model.named_parameters()), dict(policy.named_parameters())
        if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
            raise ValueError("module.ref_sync_steps: the reference and the policy must have the same parameters")
        for name, weight in mine.items():
            weight.lerp_(theirs[name].detach().to(weight.dtype), self.alpha)


def check_reference_sync(
    every: int, alpha: float, requires_reference: bool = True, precompute: bool = False, lora: bool = False
) -> None:
    """What TR-DPO's settings need (the module's build and the fail-fast config check both ask here)."""
    if not (isinstance(every, int) and every >= 1):
        raise ValueError(f"module.ref_sync_steps must be an integer >= 1 (or null: no syncing), got {every!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"module.ref_sync_alpha must be in [0, 1], got {alpha}")
    if not requires_reference:
        raise ValueError("module.ref_sync_steps: the loss uses no reference, so there is none to sync")
    if precompute:
        raise ValueError(
            "module.ref_sync_steps with module.precompute_ref=true: a precomputed (cached) reference cannot move; "
            "set module.precompute_ref=false to sync the reference (TR-DPO), or module.ref_sync_steps=null"
        )
    if lora:
        raise ValueError(
            "module.ref_sync_steps with a LoRA policy: its reference is the policy with the adapter off, which "
            "cannot move apart from it; TR-DPO needs full fine-tuning (peft=none) or a separate module.reference"
        )


class AdapterDisabled(LiveReference):
    """The PEFT policy itself with its adapter disabled: the base weights, no second copy."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "policy", policy)  # not registered: its parameters belong to DPOModule.policy

    @contextmanager
    def run(self) -> Iterator[nn.Module]:
        with self.policy.disable_adapter():
            yield self.policy


__all__ = ["AdapterDisabled", "FrozenCopy", "LiveReference", "SyncedCopy", "check_reference_sync"]
