"""KTO (Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization"): learns from unpaired
rows, each one completion labelled desirable or undesirable (`data=unpaired`, or a preference set split).

Each row arrives as a pair (`data/unpaired.py`): `chosen` is its completion y, `rejected` another row's completion
y' for the same prompt x. With r = log pi(y|x) / pi_ref(y|x) and the reference point
z0 = max(0, mean over the batch (all ranks) of log pi(y'|x) / pi_ref(y'|x)), detached (the paper's and TRL's
estimate of KL(pi || pi_ref) from mismatched pairs):

    desirable:    lambda_D (1 - sigmoid(beta (r - z0)))
    undesirable:  lambda_U (1 - sigmoid(beta (z0 - r)))

The paper's advice on imbalance: lambda_D n_D / (lambda_U n_U) in [1, 4/3] (`balance_advice`, logged at setup).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossOutput, PairLogps, PreferenceLoss, global_mean, logratios

BALANCE_RANGE = (1.0, 4.0 / 3.0)


class KTOLoss(PreferenceLoss):
    """`rewards/chosen` is beta r of each row's completion and `rewards/rejected` beta z0, so `rewards/accuracies` is
    the fraction of rows above the reference point; the per-label rewards and z0 are logged as kto/..."""

    unpaired = True
    extra_metrics = ("kto/kl", "kto/rewards_desirable", "kto/rewards_undesirable")

    def __init__(self, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> None:
        super().__init__(beta)
        for name, weight in (("desirable_weight", desirable_weight), ("undesirable_weight", undesirable_weight)):
            if not weight > 0:
                raise ValueError(f"loss.{name} must be > 0, got {weight}")
        self.desirable_weight, self.undesirable_weight = float(desirable_weight), float(undesirable_weight)

    def parts(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor, Tensor]:
        """Each row's log-ratio r, whether it is desirable, and the batch's reference point z0."""
        if policy.labels is None or bool((policy.labels < 0).any()):
            raise ValueError(
                "KTO learns from labelled rows ({prompt, completion, label}: data=unpaired, or a preference set "
                "split with data.format._target_=dpo_lightning.data.UnpairedFromPairs); these are preference pairs"
            )
        chosen, mismatched = logratios(policy, reference)
        z0 = global_mean(mismatched.detach()).clamp(min=0)
        return chosen, policy.labels == 1, z0

    def forward(self, policy: PairLogps, reference: PairLogps | None = None) -> LossOutput:
        if reference is None:
            raise ValueError("KTOLoss needs reference log-probs")
        r, desirable, z0 = self.parts(policy, reference)
        losses = self._losses(r, desirable, z0)
        extras = self._extras(r, desirable, z0)
        return LossOutput(losses, (self.beta * r).detach(), (self.beta * z0).expand_as(r).detach(), extras)

    def _losses(self, r: Tensor, desirable: Tensor, z0: Tensor) -> Tensor:
        gain = self.desirable_weight * (1 - torch.sigmoid(self.beta * (r - z0)))
        loss = self.undesirable_weight * (1 - torch.sigmoid(self.beta * (z0 - r)))
        return torch.where(desirable, gain, loss)

    def _extras(self, r: Tensor, desirable: Tensor, z0: Tensor) -> dict[str, Tensor]:
        rewards, nan = (self.beta * r).detach(), torch.full_like(r, float("nan"))
        return {  # NaN where a row is not of that label: the metrics average over the others
            "kto/kl": z0.detach().expand_as(r),
            "kto/rewards_desirable": torch.where(desirable, rewards, nan),
            "kto/rewards_undesirable": torch.where(desirable, nan, rewards),
        }

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        return self._losses(*self.parts(policy, reference))

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        r, _, z0 = self.parts(policy, reference)
        return self.beta * r, (self.beta * z0).expand_as(r)

    def extras(self, policy: PairLogps, reference: PairLogps | None) -> dict[str, Tensor]:
        return self._extras(*self.parts(policy, reference))

    def data_advice(self, label_counts: dict[str, int] | None) -> str | None:
        return self.balance_advice(label_counts["desirable"], label_counts["undesirable"]) if label_counts else None

    def balance_advice(self, desirable: int, undesirable: int) -> str | None:
        """The paper's advice (section 4.2): lambda_D n_D / (lambda_U n_U) in [1, 4/3]; a message when outside it."""
        if desirable == 0 or undesirable == 0:
            which = "desirable" if desirable == 0 else "undesirable"
            return f"KTO: the training rows have no {which} example ({desirable} desirable, {undesirable} undesirable)"
        ratio = self.desirable_weight * desirable / (self.undesirable_weight * undesirable)
        low, high = BALANCE_RANGE
        if low <= ratio <= high:
            return None
        for_desirable = self.undesirable_weight * undesirable / desirable  # either makes the ratio 1
        for_undesirable = self.desirable_weight * desirable / undesirable
        return (
            f"KTO: desirable_weight * n_desirable / (undesirable_weight * n_undesirable) = {ratio:.3g}, outside the "
            f"paper's [1, 4/3] ({desirable} desirable, {undesirable} undesirable rows): e.g. "
            f"loss.desirable_weight={for_desirable:.3g} (or loss.undesirable_weight={for_undesirable:.3g})"
        )
