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

    def scores(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        """What the sigmoid compares, per response: the log-ratios here; a variant of DPO that changes only these
        (per-token log-ratios, an f-divergence's f') overrides this, and its rewards are beta x its scores."""
        return logratios(policy, self._reference(reference))

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = self.scores(policy, reference)
        return smoothed_sigmoid_loss(self.beta * (chosen - rejected), self.label_smoothing)

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        chosen, rejected = self.scores(policy, reference)
        return self.beta * chosen, self.beta * rejected


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


class SigmoidNormLoss(DPOLoss):
    """Length-normalised DPO (TRL's `sigmoid_norm`): -log sigmoid(beta [r_w / |y_w| - r_l / |y_l|]), the log-ratios
    per response token, so that a long answer's sum does not dominate; rewards are the per-token log-ratios x beta."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0) -> None:
        super().__init__(beta, label_smoothing)

    def scores(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        chosen, rejected = logratios(policy, reference)
        return chosen / policy.chosen_tokens.clamp(min=1), rejected / policy.rejected_tokens.clamp(min=1)


class DiscoPOPLoss(PreferenceLoss):
    """Lu et al. 2024 (DiscoPOP, the log-ratio modulated loss found by LLM-driven discovery): with rho = beta h,
    (1 - sigmoid(rho / tau)) (-log sigmoid(rho)) + sigmoid(rho / tau) exp(-rho): logistic where rho is negative,
    exponential where it is large (paper: tau 0.05)."""

    def __init__(self, beta: float = 0.05, tau: float = 0.05) -> None:
        super().__init__(beta)
        if not tau > 0:
            raise ValueError(f"loss.tau must be > 0, got {tau}")
        self.tau = float(tau)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        rho = self.beta * logratio_difference(policy, reference)
        mix = torch.sigmoid(rho / self.tau)
        return (1 - mix) * -F.logsigmoid(rho) + mix * torch.exp(-rho)


class AOTLoss(PreferenceLoss):
    """Melnyk et al. 2024 (AOT, paired; TRL's `aot`): first-order stochastic dominance of the policy's chosen-minus-
    rejected log-probabilities over the reference's, through the optimal-transport (sorted) coupling over the batch:
    with d = log pi(y_w) - log pi(y_l) and d_ref the same for the reference, -log sigmoid(beta [sort(d)_i -
    sort(d_ref)_i]) for the i-th smallest of each (eps-smoothed as DPO's). The loss of the i-th pair in sorted order
    is reported at position i: its mean is the loss; a single pair is DPO."""

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.0) -> None:
        super().__init__(beta)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def sorted_difference(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        assert reference is not None
        mine, theirs = policy.chosen - policy.rejected, reference.chosen - reference.rejected
        return torch.sort(mine).values - torch.sort(theirs).values

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        return smoothed_sigmoid_loss(self.beta * self.sorted_difference(policy, reference), self.label_smoothing)


class AOTUnpairedLoss(AOTLoss):
    """Melnyk et al. 2024 (AOT, unpaired; TRL's `aot_unpaired`): dominance of the chosen log-ratios' distribution over
    the rejected ones', for data whose chosen and rejected answers need not be paired: -log sigmoid(beta [sort(r_w)_i
    - sort(r_l)_i])."""

    def sorted_difference(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = logratios(policy, reference)
        return torch.sort(chosen).values - torch.sort(rejected).values
