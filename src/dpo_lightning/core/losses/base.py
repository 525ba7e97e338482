"""The shared base of every preference loss: log-probs in, per-pair losses and implicit rewards out.

A loss sees only per-pair summed log-probabilities and response token counts (`PairLogps`, the scorer's output,
`core/logprobs.py`) of the policy and,
when it needs one, of the reference. It never sees a model or a batch, so each variant stays a few lines of the
formula from its paper and is testable by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.utils._pytree import register_dataclass

from ..logprobs import PairLogps  # the scorer's output, what every loss reads


@dataclass
class LossOutput:
    losses: Tensor  # one per pair; the training loss is their mean
    chosen_rewards: Tensor  # detached implicit rewards, one per pair
    rejected_rewards: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)  # the loss's own values, one per pair (logged)


# A pytree node, as the module's output: FSDP2's root unit then finds the loss (and hooks its backward).
register_dataclass(LossOutput)


class PreferenceLoss(nn.Module):
    """Base class: subclasses implement `pair_losses`; `rewards` defaults to DPO's beta * log(pi / pi_ref).

    A loss with values of its own to log (e.g. BCO's running reward mean) names them in `extra_metrics` and returns
    them from `extras`, one value per pair; they are logged as train/<name> and val/<name> (see `metrics.py`).
    Every constructor argument is checked here, where it is used; the fail-fast config check builds the loss to
    run the same checks before any model loads."""

    requires_reference: bool = True
    extra_metrics: tuple[str, ...] = ()
    # what the loss reads of the policy beyond the sums (`PairLogps`' optional fields; the scorer computes them)
    needs_shared_prefix: bool = False
    needs_aligned: bool = False
    # True: learns from labelled unpaired rows only (KTO); False: from preference pairs only; None: either (SFT)
    unpaired: bool | None = False

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        if not beta > 0:
            raise ValueError(f"loss.beta must be > 0, got {beta}")
        self.beta = float(beta)

    def forward(self, policy: PairLogps, reference: PairLogps | None = None) -> LossOutput:
        if self.requires_reference and reference is None:
            raise ValueError(f"{type(self).__name__} needs reference log-probs")
        losses = self.pair_losses(policy, reference)
        chosen_rewards, rejected_rewards = self.rewards(policy, reference)
        return LossOutput(losses, chosen_rewards.detach(), rejected_rewards.detach(), self.extras(policy, reference))

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        raise NotImplementedError

    def extras(self, policy: PairLogps, reference: PairLogps | None) -> dict[str, Tensor]:
        return {}

    def data_advice(self, label_counts: dict[str, int] | None) -> str | None:
        """Advice on the training data for this loss (logged at setup), e.g. KTO's on the balance of its labels."""
        return None

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        chosen, rejected = logratios(policy, reference)
        return self.beta * chosen, self.beta * rejected

    def extra_repr(self) -> str:
        return ", ".join(
            f"{k}={v}" for k, v in vars(self).items() if isinstance(v, (int, float, bool)) and not k.startswith("_")
        )


def global_mean(values: Tensor) -> Tensor:
    """The mean of `values` over every rank's (an all-reduce of sum and count when training is distributed)."""
    stats = torch.stack([values.double().sum(), values.new_tensor(float(values.numel()), dtype=torch.float64)])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(stats)
    return (stats[0] / stats[1].clamp(min=1)).to(values.dtype)


def logratios(policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
    """log pi(y|x) - log pi_ref(y|x) for chosen and rejected; with no reference, log pi(y|x) (a uniform reference)."""
    if reference is None:
        return policy.chosen, policy.rejected
    return policy.chosen - reference.chosen, policy.rejected - reference.rejected


def chosen_nll(policy: PairLogps) -> Tensor:
    """Length-normalised negative log-likelihood of the chosen response (the SFT / RPO / ORPO term)."""
    return -policy.chosen_mean


def smoothed_sigmoid_loss(logits: Tensor, label_smoothing: float) -> Tensor:
    """-(1 - eps) log sigmoid(z) - eps log sigmoid(-z): conservative DPO (Mitchell 2023) when eps > 0."""
    return -(1 - label_smoothing) * nn.functional.logsigmoid(logits) - label_smoothing * nn.functional.logsigmoid(
        -logits
    )


def check_label_smoothing(value: float, upper: float = 0.5) -> float:
    if not 0.0 <= value < upper:
        raise ValueError(f"loss.label_smoothing must be in [0, {upper}), got {value}")
    return float(value)


__all__ = ["PairLogps", "LossOutput", "PreferenceLoss", "logratios", "chosen_nll", "smoothed_sigmoid_loss"]
