"""Losses that change another loss's inputs or weights, whatever the loss (TRL's `ld_alpha` and `use_weighting`,
which apply to every `loss_type`): `loss=ld_dpo` and `loss=wpo` wrap DPO; `loss/inner@loss.loss=ipo` wraps another."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from .base import LossOutput, PairLogps, PreferenceLoss


class WrappedLoss(PreferenceLoss):
    """The common part: the inner loss's reference needs, extras and flags, and its beta for the implicit rewards."""

    def __init__(self, loss: PreferenceLoss) -> None:
        if not isinstance(loss, PreferenceLoss):
            raise ValueError(f"loss.loss must be a preference loss (a loss option), got {loss!r}")
        super().__init__(loss.beta)
        self.loss = loss
        self.requires_reference = loss.requires_reference
        self.needs_shared_prefix = loss.needs_shared_prefix
        self.needs_aligned = loss.needs_aligned
        self.unpaired = loss.unpaired
        self.extra_metrics = loss.extra_metrics


class LengthDesensitizedLoss(WrappedLoss):
    """LD-DPO (Liu et al. 2024, "Length Desensitization in Directed Preference Optimization"): the policy's log-
    likelihood of a response is split at the pair's shared length l_p = min(|y_w|, |y_l|) and the excess is damped,
    log pi^(y) = sum_{t <= l_p} log pi(y_t) + alpha sum_{t > l_p} log pi(y_t); alpha = 1 is the inner loss, alpha -> 0
    ignores the longer answer's extra tokens (paper: 0.3-0.7 by model). As TRL's `ld_alpha`, the reference's
    log-probs are the plain sums (so a precomputed reference serves)."""

    def __init__(self, loss: PreferenceLoss, alpha: float = 0.5) -> None:
        super().__init__(loss)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"loss.alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        self.needs_shared_prefix = True

    def desensitized(self, policy: PairLogps) -> PairLogps:
        if policy.chosen_shared is None or policy.rejected_shared is None:
            raise ValueError("LD-DPO needs the policy's shared-length sums (PairScorer(shared_prefix=True))")
        chosen = policy.chosen_shared + self.alpha * (policy.chosen - policy.chosen_shared)
        rejected = policy.rejected_shared + self.alpha * (policy.rejected - policy.rejected_shared)
        return replace(policy, chosen=chosen, rejected=rejected)

    def forward(self, policy: PairLogps, reference: PairLogps | None = None) -> LossOutput:
        return self.loss(self.desensitized(policy), reference)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        return self.loss.pair_losses(self.desensitized(policy), reference)

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        return self.loss.rewards(self.desensitized(policy), reference)

    def extras(self, policy: PairLogps, reference: PairLogps | None) -> dict[str, Tensor]:
        return self.loss.extras(self.desensitized(policy), reference)


class WeightedPairLoss(WrappedLoss):
    """WPO (Zhou et al. 2024, "Weighted Preference Optimization"): each pair's loss times how likely the current
    policy is to produce the pair, w = min(1, exp(a_w + a_l)), a = (1/|y|) sum_t [log pi(y_t) - log sum_v pi(v)^2]
    (the policy's own sampling distribution as the yardstick, no gradient through w), so that off-policy pairs count
    less. As TRL's `use_weighting`; the weights are logged as train/wpo_weight."""

    def __init__(self, loss: PreferenceLoss) -> None:
        super().__init__(loss)
        self.needs_aligned = True
        self.extra_metrics = (*loss.extra_metrics, "wpo_weight")

    def weights(self, policy: PairLogps) -> Tensor:
        if policy.chosen_aligned is None or policy.rejected_aligned is None:
            raise ValueError("WPO needs the policy's aligned log-probs (PairScorer(aligned=True))")
        return torch.exp(policy.chosen_aligned + policy.rejected_aligned).clamp(max=1.0).detach()

    def forward(self, policy: PairLogps, reference: PairLogps | None = None) -> LossOutput:
        out = self.loss(policy, reference)
        weights = self.weights(policy)
        out.extras = {**out.extras, "wpo_weight": weights}
        return replace(out, losses=out.losses * weights)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        return self.loss.pair_losses(policy, reference) * self.weights(policy)

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        return self.loss.rewards(policy, reference)

    def extras(self, policy: PairLogps, reference: PairLogps | None) -> dict[str, Tensor]:
        return {**self.loss.extras(policy, reference), "wpo_weight": self.weights(policy)}
