"""Losses that score the chosen and rejected log-ratios separately rather than only their difference.

Each uses r_w = log pi(y_w)/pi_ref(y_w) and r_l = log pi(y_l)/pi_ref(y_l).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import PairLogps, PreferenceLoss, logratios


class BCOPairLoss(PreferenceLoss):
    """Jung et al. 2024 (BCO, paired): -log sigmoid(beta r_w - delta) - log sigmoid(-(beta r_l - delta)),
    delta the running mean of all rewards seen so far (reduced across ranks), logged as `bco/delta`."""

    extra_metrics = ("bco/delta",)

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__(beta)
        self.register_buffer("reward_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("reward_count", torch.zeros((), dtype=torch.float64))

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = logratios(policy, reference)
        chosen, rejected = self.beta * chosen, self.beta * rejected
        if self.training:
            self._update_delta(torch.cat([chosen, rejected]).detach())
        delta = self.reward_mean.to(chosen.dtype)
        return -F.logsigmoid(chosen - delta) - F.logsigmoid(-(rejected - delta))

    def extras(self, policy: PairLogps, reference: PairLogps | None) -> dict[str, Tensor]:
        return {"bco/delta": self.reward_mean.detach().expand(policy.chosen.shape[0])}

    @torch.no_grad()
    def _update_delta(self, rewards: Tensor) -> None:
        stats = torch.stack(
            [rewards.double().sum(), torch.tensor(float(rewards.numel()), dtype=torch.float64, device=rewards.device)]
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(stats)
        total = self.reward_count + stats[1]
        self.reward_mean.copy_((self.reward_mean * self.reward_count + stats[0]) / total)
        self.reward_count.copy_(total)


class APOZeroLoss(PreferenceLoss):
    """D'Oosterlinck et al. 2024 (APO-zero, for chosen better than the model):
    (1 - sigmoid(beta r_w)) + sigmoid(beta r_l)."""

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = logratios(policy, reference)
        return (1 - torch.sigmoid(self.beta * chosen)) + torch.sigmoid(self.beta * rejected)


class APODownLoss(PreferenceLoss):
    """D'Oosterlinck et al. 2024 (APO-down, for chosen worse than the model):
    sigmoid(beta r_w) + (1 - sigmoid(beta (r_w - r_l)))."""

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = logratios(policy, reference)
        return torch.sigmoid(self.beta * chosen) + (1 - torch.sigmoid(self.beta * (chosen - rejected)))


class SPPOHardLoss(PreferenceLoss):
    """Wu et al. 2024 (SPPO, hard labels): (r_w - 1/(2 beta))^2 + (r_l + 1/(2 beta))^2."""

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = logratios(policy, reference)
        return (chosen - 0.5 / self.beta) ** 2 + (rejected + 0.5 / self.beta) ** 2


class NCAPairLoss(PreferenceLoss):
    """Chen et al. 2024 (NCA, paired):
    -log sigmoid(beta r_w) - 1/2 log sigmoid(-beta r_w) - 1/2 log sigmoid(-beta r_l)."""

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = logratios(policy, reference)
        chosen, rejected = self.beta * chosen, self.beta * rejected
        return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


class EXOPairLoss(PreferenceLoss):
    """Ji et al. 2024 (EXO, K=2): reverse KL from the model's pair distribution sigmoid(+-beta h) to the
    eps-smoothed labels: sigmoid(z)(log sigmoid(z) - log(1-eps)) + sigmoid(-z)(log sigmoid(-z) - log eps)."""

    def __init__(self, beta: float = 0.1, epsilon: float = 1e-3) -> None:
        super().__init__(beta)
        if not 0.0 < epsilon < 0.5:
            raise ValueError(f"loss.epsilon must be in (0, 0.5), got {epsilon}")
        self.epsilon = float(epsilon)

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        chosen, rejected = logratios(policy, reference)
        z = self.beta * (chosen - rejected)
        return torch.sigmoid(z) * (F.logsigmoid(z) - math.log(1 - self.epsilon)) + torch.sigmoid(-z) * (
            F.logsigmoid(-z) - math.log(self.epsilon)
        )
