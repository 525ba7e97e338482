"""`PreferenceMetrics`: loss, implicit rewards, accuracy, log-probs, KL and a loss's own extras, as sums and counts.

Every state is a sum with `dist_reduce_fx="sum"`, so the value over several batches, accumulation steps or ranks
is the exact mean over all pairs (or all response tokens, for the KL), never an average of averages.

Adding a metric: one entry in `PAIR_METRICS` (a name as logged under train/ and val/, and a function of the loss
output and the policy's log-probs giving one value per pair). A loss reports values of its own by naming them in
its `extra_metrics` and returning them (one per pair) from `extras()`: they are logged under the same names, each
the mean over the pairs where it is not NaN (a value of some rows only: KTO's rewards of its desirable rows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from ..core.losses import LossOutput, PairLogps

# Logged name (as in TRL, so dashboards read the same) -> one value per pair.
PAIR_METRICS: dict[str, Callable[[LossOutput, PairLogps], Tensor]] = {
    "loss": lambda out, policy: out.losses,
    "rewards/chosen": lambda out, policy: out.chosen_rewards,
    "rewards/rejected": lambda out, policy: out.rejected_rewards,
    "rewards/margins": lambda out, policy: out.chosen_rewards - out.rejected_rewards,
    "rewards/accuracies": lambda out, policy: out.chosen_rewards > out.rejected_rewards,  # ties are not wins
    "logps/chosen": lambda out, policy: policy.chosen,
    "logps/rejected": lambda out, policy: policy.rejected,
    # Does the policy itself (no reference) give the chosen response the higher log-probability: summed, per token.
    "preference/accuracy": lambda out, policy: policy.chosen > policy.rejected,
    "preference/accuracy_per_token": lambda out, policy: policy.chosen_mean > policy.rejected_mean,
}
KL = "kl"  # exact KL(policy || reference) per response token, averaged over tokens


def _state(name: str) -> str:
    return "sum_" + name.replace("/", "__")


class PreferenceMetrics(Metric):
    full_state_update = False
    higher_is_better = None

    def __init__(self, extra_names: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = (*PAIR_METRICS, *extra_names)
        self.extra_names = tuple(extra_names)
        counts = tuple(f"count/{name}" for name in self.extra_names)
        for name in (*self.names, *counts, "pairs", "kl_sum", "kl_tokens"):
            self.add_state(_state(name), default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.has_kl = False  # known on the host, so computing never reads a device value

    def _add(self, name: str, value: Tensor | float) -> None:
        key = _state(name)
        total = value.detach().double().sum() if isinstance(value, Tensor) else value
        setattr(self, key, getattr(self, key) + total)

    def update(self, out: LossOutput, policy: PairLogps, token_kl: Tensor | None = None) -> None:
        for name, value in PAIR_METRICS.items():
            self._add(name, value(out, policy))
        for name in self.extra_names:
            value = out.extras[name].detach()
            self._add(name, value.nan_to_num(nan=0.0))
            self._add(f"count/{name}", (~value.isnan()).sum())
        self._add("pairs", float(out.losses.numel()))
        if token_kl is not None:
            self.has_kl = True
            self._add("kl_sum", token_kl)
            self._add("kl_tokens", float(token_kl.numel()))

    def compute(self) -> dict[str, Tensor]:
        pairs = getattr(self, _state("pairs")).clamp(min=1)
        out = {name: (getattr(self, _state(name)) / pairs).float() for name in PAIR_METRICS}
        for name in self.extra_names:  # NaN when no pair had a value (0 / 0, computed on the device)
            out[name] = (getattr(self, _state(name)) / getattr(self, _state(f"count/{name}"))).float()
        if self.has_kl:
            out[KL] = (getattr(self, _state("kl_sum")) / getattr(self, _state("kl_tokens")).clamp(min=1)).float()
        return out

    def reset(self) -> None:
        super().reset()
        self.has_kl = False


def log_metrics(module: Any, metrics: Metric, prefix: str, on_step: bool) -> None:
    """Log `metrics` (reduced across ranks by torchmetrics) as `<prefix>/<name>` from a LightningModule, then reset
    them; nothing when they saw no update (e.g. a step the non-finite guard skipped)."""
    if metrics.update_count == 0:
        return
    values = metrics.compute()
    metrics.reset()
    named = {f"{prefix}/{k}": v for k, v in values.items()}
    module.log_dict(named, on_step=on_step, on_epoch=not on_step, batch_size=1, sync_dist=False)
