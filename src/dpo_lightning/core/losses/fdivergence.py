"""f-DPO (Wang et al. 2023, "Beyond Reverse KL"): DPO under another f-divergence from the reference. The implicit
reward becomes beta f'(u), u = pi(y|x) / pi_ref(y|x), and the loss -log sigmoid(beta [f'(u_w) - f'(u_l)]):

- reverse KL, f(u) = u log u: f'(u) = log u + 1, DPO itself;
- forward KL, f(u) = -log u: f'(u) = -1/u;
- Jensen-Shannon, f(u) = u log u - (u + 1) log((u + 1) / 2): f'(u) = log(2u / (1 + u)) = log 2 + log sigmoid(log u);
- alpha-divergence, f(u) = (u^(1-a) - (1-a) u - a) / (a (a - 1)): f'(u) = (1 - u^(-a)) / a, 0 < a <= 1 (a -> 0 is
  reverse KL, a = 1 forward KL up to a constant). TRL's `f_alpha_divergence_coef` is this a (TRL's default 1.0).

TRL's names: `f_divergence_type` reverse_kl / js_divergence / alpha_divergence (forward KL is the paper's, not TRL's).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from .base import PairLogps, logratios
from .dpo import DPOLoss

DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")
EXP_LIMIT = 80.0  # exp of a larger log-ratio overflows float32


class FDivergenceLoss(DPOLoss):
    def __init__(
        self, beta: float = 0.1, divergence: str = "reverse_kl", alpha: float = 0.5, label_smoothing: float = 0.0
    ) -> None:
        super().__init__(beta, label_smoothing)
        if divergence not in DIVERGENCES:
            raise ValueError(f"loss.divergence must be one of {DIVERGENCES}, got {divergence!r}")
        if divergence == "alpha" and not 0.0 < alpha <= 1.0:
            raise ValueError(f"loss.alpha must be in (0, 1] for the alpha-divergence, got {alpha}")
        self.divergence, self.alpha = divergence, float(alpha)

    def f_prime(self, r: Tensor) -> Tensor:
        """f'(u) at u = exp(r), r the log-ratio (the constant of reverse KL's dropped: it cancels in the loss)."""
        if self.divergence == "reverse_kl":
            return r
        if self.divergence == "forward_kl":
            return -torch.exp(-r.clamp(min=-EXP_LIMIT))
        if self.divergence == "js":
            return math.log(2) + F.logsigmoid(r)
        return (1 - torch.exp(-self.alpha * r).clamp(max=math.exp(EXP_LIMIT))) / self.alpha

    def scores(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        chosen, rejected = logratios(policy, reference)
        return self.f_prime(chosen), self.f_prime(rejected)
