"""A weighted mixture of losses over the same log-probs (`loss=mix`; TRL's `loss_type` list with `loss_weights`):
MPO (Wang et al. 2024) is DPO 0.8 + BCO 0.2 + SFT 1.0 (`loss=mpo`); "DPO + SFT" is Iterative RPO (`loss=dpo_sft`,
which is `loss=rpo` by another name)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from .base import LossOutput, PairLogps, PreferenceLoss


class MixtureLoss(PreferenceLoss):
    """sum_i w_i L_i, each term computed once from the same log-probs. `terms`: name -> {loss, weight}. Every term's
    value per pair is logged as `loss/<name>` (unweighted) beside its weight, `loss/<name>/weight`, and its own
    values as it names them; the implicit rewards are those of the first term that uses the reference (else the
    first term's). `beta` is for reporting (the evaluation's implicit reward): by default the first term's."""

    def __init__(self, terms: Mapping[str, Any], beta: float | None = None) -> None:
        if not terms:
            raise ValueError("loss.terms: a mixture needs at least one term (name: {loss: ..., weight: ...})")
        losses, weights = {}, {}
        for name, term in terms.items():
            loss, weight = term["loss"], term.get("weight", 1.0)
            if not isinstance(loss, PreferenceLoss):
                raise ValueError(f"loss.terms.{name}.loss must be a preference loss (a loss option), got {loss!r}")
            if weight is None or not float(weight) >= 0:
                raise ValueError(f"loss.terms.{name}.weight must be a number >= 0, got {weight!r}")
            losses[str(name)], weights[str(name)] = loss, float(weight)
        first = next(iter(losses.values()))
        super().__init__(first.beta if beta is None else beta)
        self.terms, self.weights = nn.ModuleDict(losses), weights
        self.requires_reference = any(t.requires_reference for t in losses.values())
        self.needs_shared_prefix = any(t.needs_shared_prefix for t in losses.values())
        self.needs_aligned = any(t.needs_aligned for t in losses.values())
        kinds = {t.unpaired for t in losses.values()} - {None}
        if len(kinds) > 1:
            raise ValueError(
                "loss.terms: an unpaired loss (KTO) cannot be mixed with pairwise ones (their data differ)"
            )
        self.unpaired = kinds.pop() if kinds else None
        self.rewards_term = next((n for n, t in losses.items() if t.requires_reference), next(iter(losses)))
        names = [(f"loss/{n}", f"loss/{n}/weight") for n in losses]
        self.extra_metrics = tuple(x for pair in names for x in pair) + tuple(
            m for t in losses.values() for m in t.extra_metrics
        )

    def forward(self, policy: PairLogps, reference: PairLogps | None = None) -> LossOutput:
        """Every term once (a term with state, as BCO's running mean, is updated once a step)."""
        if self.requires_reference and reference is None:
            raise ValueError("MixtureLoss: a term needs reference log-probs")
        values = {name: term.pair_losses(policy, reference) for name, term in self.terms.items()}
        chosen, rejected = self.rewards(policy, reference)
        extras: dict[str, Tensor] = {}
        for name, value in values.items():
            extras[f"loss/{name}"] = value.detach()
            extras[f"loss/{name}/weight"] = value.detach().new_full(value.shape, self.weights[name])
        for term in self.terms.values():
            extras.update(term.extras(policy, reference))
        return LossOutput(self.combine(values), chosen.detach(), rejected.detach(), extras)

    def combine(self, values: dict[str, Tensor]) -> Tensor:
        return sum(self.weights[name] * value for name, value in values.items())

    def pair_losses(self, policy: PairLogps, reference: PairLogps | None) -> Tensor:
        return self.combine({name: term.pair_losses(policy, reference) for name, term in self.terms.items()})

    def rewards(self, policy: PairLogps, reference: PairLogps | None) -> tuple[Tensor, Tensor]:
        return self.terms[self.rewards_term].rewards(policy, reference)

    def extra_repr(self) -> str:
        return ", ".join(f"{n}={w:g}" for n, w in self.weights.items())
