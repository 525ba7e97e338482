"""DPO and the losses that keep its pairwise log-ratio difference h = (log pi/pi_ref)(y_w) - (log pi/pi_ref)(y_l)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import PairLogps, PreferenceLoss, check_label_smoothing, chosen_nll, logratios, smoothed_sigmoid_loss


def logratio_difference(policy: PairLogps, reference: PairLogps | None) -> Tensor:
    chosen, rejected = logratios(policy, reference)
    return chosen - rejected


class DPOLoss(PreferenceLoss):
    """Rafailov et al. 2023: -log sigmoid(beta * h). `label_smoothing` eps gives conservative DPO
    (-(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h)); `reference_free` uses a uniform reference."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0, reference_free: bool = False) -> None:
        super().__init__(beta)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.reference_free = bool(reference_free)
        self.requires_reference = not self.reference_free

    def _reference(self, reference: PairLogps | None) -> PairLogps | None:
        return None if self.reference_free else reference

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        h = logratio_difference(policy, self._reference(reference))
        return smoothed_sigmoid_loss(self.beta * h, self.label_smoothing)

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        return super().rewards(policy, self._reference(reference))


class RobustLoss(PreferenceLoss):
    """Chowdhury et al. 2024 (rDPO), unbiased under label-flip rate eps:
    ((1-eps)(-log sigmoid(beta h)) - eps(-log sigmoid(-beta h))) / (1 - 2 eps)."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.1) -> None:
        super().__init__(beta)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        z = self.beta * logratio_difference(policy, reference)
        eps = self.label_smoothing
        return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


class HingeLoss(PreferenceLoss):
    """SLiC (Zhao et al. 2023) hinge on the log-ratio difference: max(0, 1 - beta h); 1/beta is the margin."""

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        return torch.relu(1 - self.beta * logratio_difference(policy, reference))


class IPOLoss(PreferenceLoss):
    """Azar et al. 2023 (IPO): (h - 1/(2 beta))^2 with length-normalised (per-token mean) log-probs."""

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        assert reference is not None
        h = (policy.chosen_mean - reference.chosen_mean) - (policy.rejected_mean - reference.rejected_mean)
        return (h - 1 / (2 * self.beta)) ** 2


class RPOLoss(DPOLoss):
    """Pang et al. 2024 (iterative RPO): DPO plus alpha times the length-normalised NLL of the chosen response."""

    def __init__(self, beta: float = 0.1, alpha: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(beta, label_smoothing=label_smoothing)
        self.alpha = float(alpha)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        return super().pair_losses(policy, reference) + self.alpha * chosen_nll(policy)
