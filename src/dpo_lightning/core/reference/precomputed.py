"""The reference log-probs of every pair computed once at fit start and looked up after (cached across runs)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .. import refcache
from ..batches import PairBatch
from ..logprobs import PairScorer, ResponseStates
from ..losses import PairLogps
from ..paths import default_cache_dir
from .base import Reference, ReferenceScores
from .live import LiveReference

log = logging.getLogger(__name__)


class Precomputed(Reference):
    """Reference log-probs of every training and validation pair, computed once at fit start by `live` (or read
    from the cache in `cache_dir`, shared by runs and sweep jobs: see `refcache`), then looked up by pair key. A
    frozen copy is freed once its numbers are cached; an adapter-disabled policy stays runnable (it costs nothing).

    Under FSDP with several processes the reference is sharded with the policy: its pass runs inside the root
    unit's forward (as Lightning runs training_step), every rank calling it equally often, so each unit gathers its
    weights as in training (`lightning/precompute.py` runs the pass: it needs the trainer). The cache key is taken
    from the whole weights, before they are sharded (`take_key`)."""

    def __init__(
        self, live: LiveReference | None, cache_dir: str | None = None, logps: refcache.ReferenceLogps | None = None
    ) -> None:
        super().__init__()
        self.live, self.cache_dir, self.logps = live, cache_dir, logps
        self.key: str | None = None

    @property
    def can_run(self) -> bool:
        return self.live is not None

    def run(self):
        return super().run() if self.live is None else self.live.run()

    def frozen_model(self) -> nn.Module | None:
        return self.live.frozen_model() if self.live is not None else None

    def score(
        self, batch: PairBatch, scorer: PairScorer, policy: PairLogps, policy_states: ResponseStates | None = None
    ) -> ReferenceScores:
        if self.logps is None:
            raise RuntimeError("the precomputed reference has no log-probs yet (DPOModule.on_fit_start computes them)")
        chosen, rejected = self.logps.lookup(batch.pair_keys)
        return ReferenceScores(
            PairLogps(
                chosen.to(policy.chosen.dtype),
                rejected.to(policy.rejected.dtype),
                policy.chosen_tokens,
                policy.rejected_tokens,
            )
        )

    def take_key(self, context: str) -> None:
        """The cache file's key: a fingerprint of the whole reference weights and `context` (what else shapes its
        numbers, e.g. the precision), taken before a strategy shards the weights; once."""
        if self.key is None and self.logps is None and self.live is not None:
            with self.live.run() as model:
                self.key = refcache.fingerprint(model, context)

    @property
    def cache_path(self) -> Path:
        if self.key is None:
            raise RuntimeError("the precomputed reference has no cache key yet (take_key first)")
        return Path(self.cache_dir or default_cache_dir()) / "ref_logps" / f"{self.key}.pt"

    def use(self, logps: refcache.ReferenceLogps | None = None) -> None:
        """Look the batches up in `logps` from now on (or in the numbers it was given); a frozen copy, whose
        numbers are all there, is freed."""
        if logps is not None:
            self.logps = logps
        if self.logps is None:
            raise ValueError("the precomputed reference has no log-probs to use")
        if self.live is not None and self.live.holds_weights:
            self.live = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def pair_logps(self, scorer: PairScorer) -> Callable[[PairBatch], PairLogps]:
        """`score(batch)`: the live reference's log-probs of a batch's pairs (what the cache is filled with)."""

        @torch.no_grad()
        def score(batch: PairBatch) -> PairLogps:
            with self.live.run() as model:
                return scorer.pairs(scorer.states(model, batch))

        return score


__all__ = ["Precomputed"]
