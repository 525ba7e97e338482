"""The protocol every reference answers (`Reference`), its scores, and the reference of a run that needs none."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor, nn

from ..batches import PairBatch
from ..logprobs import PairScorer, ResponseStates
from ..losses import PairLogps


@dataclass
class ReferenceScores:
    logps: PairLogps | None  # None: no reference log-probs (a reference-free loss ignores them)
    kl: Tensor | None = None  # [N] exact KL(policy || reference) per response token, when asked and possible


class Reference(nn.Module):
    """Base: `score` gives the reference log-probs of a batch's pairs (and the token KL when it can); `run()`
    yields a model that can generate, where there is one."""

    has_token_kl = False  # can give the exact token KL (needs a live model)
    holds_weights = False  # keeps a model's weights of its own in memory
    moves = False  # changes during training (so its weights are checkpointed)

    def after_optimizer_step(self, policy: nn.Module, step: int) -> bool:
        """Called after each optimizer step (`step` counts them from 1); True if the reference changed."""
        return False

    def score(
        self, batch: PairBatch, scorer: PairScorer, policy: PairLogps, policy_states: ResponseStates | None = None
    ) -> ReferenceScores:
        raise NotImplementedError

    @property
    def can_run(self) -> bool:
        return False

    @contextmanager
    def run(self) -> Iterator[nn.Module]:
        raise RuntimeError(
            f"no reference model to run ({type(self).__name__}): a reference-free loss with "
            "module.compute_kl=false, or module.precompute_ref=true, which frees the reference copy "
            "once its log-probs are cached"
        )
        yield  # pragma: no cover

    def frozen_model(self) -> nn.Module | None:
        """The separate frozen model this reference holds, if any (e.g. to compile it like the policy)."""
        return None


class NoReference(Reference):
    """No reference at all: for reference-free losses that log no KL."""

    def score(
        self, batch: PairBatch, scorer: PairScorer, policy: PairLogps, policy_states: ResponseStates | None = None
    ) -> ReferenceScores:
        return ReferenceScores(None)


__all__ = ["NoReference", "Reference", "ReferenceScores"]
