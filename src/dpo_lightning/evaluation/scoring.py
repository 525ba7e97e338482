"""Score preference pairs with a model, and the statistics that compare two models on them."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..core.logprobs import pair_logps, response_states
from ..core.losses import PairLogps
from ..core.statistics import bca_mean, proportion


@torch.no_grad()
def score_pairs(model: nn.Module, loader: DataLoader, device: torch.device | str = "cpu", progress=None) -> PairLogps:
    """Summed log-probs and token counts of every pair's chosen and rejected response (CPU tensors, in order)."""
    model.eval()
    parts = []
    for batch in progress(loader) if progress else loader:
        pairs = pair_logps(response_states(model, batch.to(device), separate_halves=True))
        parts.append([pairs.chosen.cpu(), pairs.rejected.cpu(), pairs.chosen_tokens.cpu(), pairs.rejected_tokens.cpu()])
    return PairLogps(*(torch.cat(column).double() for column in zip(*parts)))


def clearly_greater(a: Tensor, b: Tensor, rel: float = 1e-6) -> Tensor:
    """a > b by more than floating-point noise (fp32 sums of hundreds of log-probs round differently by padding
    and order); differences within `rel` of the magnitudes are ties, and a tie is not a win."""
    return a > b + rel * torch.maximum(a.abs(), b.abs())


def preference_accuracy(scores: PairLogps, confidence: float = 0.95) -> dict[str, float | list[float]]:
    """How often the model gives the chosen response the higher log-probability: summed and per token, each with
    its Wilson interval. Needs no reference model, so the base model has a meaningful number too."""
    summed = proportion(clearly_greater(scores.chosen, scores.rejected), confidence)
    per_token = proportion(clearly_greater(scores.chosen_mean, scores.rejected_mean), confidence)
    return {
        "preference_accuracy": summed.value,
        "preference_accuracy_ci": [summed.low, summed.high],
        "preference_accuracy_normalized": per_token.value,
        "preference_accuracy_normalized_ci": [per_token.low, per_token.high],
        "mean_logp_chosen": scores.chosen.mean().item(),
        "mean_logp_rejected": scores.rejected.mean().item(),
    }


def implicit_rewards(policy: PairLogps, base: PairLogps, beta: float) -> dict[str, Tensor]:
    """DPO's implicit reward of the trained policy against its base: beta * log(pi / pi_base), per response."""
    chosen = beta * (policy.chosen - base.chosen)
    rejected = beta * (policy.rejected - base.rejected)
    return {"chosen": chosen, "rejected": rejected, "margins": chosen - rejected}


def likelihood_displacement(
    base: PairLogps, dpo: PairLogps, resamples: int, confidence: float, seed: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Per-token log-probability of the held-out chosen and rejected answers under base and DPO (BCa intervals of
    the means), and the paired change DPO - base. DPO can widen the margin by pushing both answers down, mass going
    to answers in neither (Razin et al. 2024, "likelihood displacement"); a falling chosen log-prob shows it."""
    out = {}
    for side in ("chosen", "rejected"):
        b, d = getattr(base, f"{side}_mean"), getattr(dpo, f"{side}_mean")
        out[side] = {
            "base": bca_mean(b, resamples, confidence, seed).as_dict(),
            "dpo": bca_mean(d, resamples, confidence, seed).as_dict(),
            "change": bca_mean(d - b, resamples, confidence, seed).as_dict(),
        }
    return out


def reward_statistics(
    rewards: dict[str, Tensor], resamples: int, confidence: float, seed: int
) -> dict[str, dict[str, float]]:
    margins = rewards["margins"]
    return {
        "accuracy": proportion(clearly_greater(rewards["chosen"], rewards["rejected"]), confidence).as_dict(),
        "margin": bca_mean(margins, resamples, confidence, seed).as_dict(),
        "chosen": bca_mean(rewards["chosen"], resamples, confidence, seed).as_dict(),
        "rejected": bca_mean(rewards["rejected"], resamples, confidence, seed).as_dict(),
        "margin_quantiles": dict(
            zip(
                ("p05", "p25", "p50", "p75", "p95"),
                torch.quantile(
                    margins.double(), torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)
                ).tolist(),
            )
        ),
    }
