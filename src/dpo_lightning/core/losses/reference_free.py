"""Losses that need no reference model: SimPO, ORPO and plain SFT on the chosen responses.

Their implicit rewards are beta times the length-normalised policy log-probs (as reported by SimPO and ORPO).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import PairLogps, PreferenceLoss, check_label_smoothing, chosen_nll, smoothed_sigmoid_loss


class _ReferenceFree(PreferenceLoss):
    requires_reference = False

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        return self.beta * policy.chosen_mean, self.beta * policy.rejected_mean


class SimPOLoss(_ReferenceFree):
    """Meng et al. 2024: -log sigmoid(beta/|y_w| log pi(y_w) - beta/|y_l| log pi(y_l) - gamma).
    Paper defaults beta=2.0, gamma=1.0 (gamma/beta = 0.5)."""

    def __init__(self, beta: float = 2.0, gamma: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(beta)
        self.gamma = float(gamma)
        self.label_smoothing = check_label_smoothing(label_smoothing)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        z = self.beta * (policy.chosen_mean - policy.rejected_mean) - self.gamma
        return smoothed_sigmoid_loss(z, self.label_smoothing)


class ORPOLoss(_ReferenceFree):
    """Hong et al. 2024: NLL(y_w) + lambda * -log sigmoid(log odds(y_w) - log odds(y_l)),
    odds(y) = p / (1 - p) with p the per-token mean probability; lambda is `beta` (paper default 0.1)."""

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = policy.chosen_mean, policy.rejected_mean
        # log(1 - exp(x)) for x < 0, stable for x near 0 and for very negative x.
        log_odds = (chosen - rejected) - (_log1mexp(chosen) - _log1mexp(rejected))
        return chosen_nll(policy) - self.beta * F.logsigmoid(log_odds)


class SFTLoss(_ReferenceFree):
    """Supervised fine-tuning on the chosen response (length-normalised NLL); the DPO paper's first stage. On
    unpaired rows (KTO's data) it learns the desirable completions only: each batch's loss is their mean."""

    unpaired = None  # preference pairs or labelled rows

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__(beta)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        nll = chosen_nll(policy)
        if policy.labels is None or bool((policy.labels < 0).all()):
            return nll
        desirable = (policy.labels == 1).to(nll.dtype)
        return nll * desirable * (desirable.numel() / desirable.sum().clamp(min=1))


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x <= 0 (Maechler 2012): log(-expm1(x)) near 0, log1p(-exp(x)) below -ln 2."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -0.6931471805599453, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))
