"""`PreferenceMetrics`: loss, implicit rewards, accuracy, log-probs and KL as sums and counts.

Every state is a sum with `dist_reduce_fx="sum"`, so the value over several batches, accumulation steps or ranks
is the exact mean over all pairs (or all response tokens, for the KL), never an average of averages.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

PAIR_SUMS = ("loss", "chosen_rewards", "rejected_rewards", "margins", "accuracies", "chosen_logps", "rejected_logps")
# The logged names (as in TRL, so dashboards read the same), under train/ or val/.
NAMES = {
    "loss": "loss",
    "chosen_rewards": "rewards/chosen",
    "rejected_rewards": "rewards/rejected",
    "margins": "rewards/margins",
    "accuracies": "rewards/accuracies",
    "chosen_logps": "logps/chosen",
    "rejected_logps": "logps/rejected",
}


class PreferenceMetrics(Metric):
    full_state_update = False
    higher_is_better = None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in PAIR_SUMS:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("kl_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("kl_tokens", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, losses: Tensor, chosen_rewards: Tensor, rejected_rewards: Tensor, chosen_logps: Tensor,
               rejected_logps: Tensor, token_kl: Tensor | None = None) -> None:
        values = {
            "loss": losses, "chosen_rewards": chosen_rewards, "rejected_rewards": rejected_rewards,
            "margins": chosen_rewards - rejected_rewards, "accuracies": (chosen_rewards > rejected_rewards),
            "chosen_logps": chosen_logps, "rejected_logps": rejected_logps,
        }
        for name, value in values.items():
            setattr(self, name, getattr(self, name) + value.detach().double().sum())
        self.pairs += losses.numel()
        if token_kl is not None:
            self.kl_sum += token_kl.detach().double().sum()
            self.kl_tokens += token_kl.numel()

    def compute(self) -> dict[str, Tensor]:
        pairs = self.pairs.clamp(min=1)
        out = {NAMES[name]: (getattr(self, name) / pairs).float() for name in PAIR_SUMS}
        if self.kl_tokens > 0:
            out["kl"] = (self.kl_sum / self.kl_tokens).float()
        return out
