"""What "the reference" is for a run: one class per kind, each answering `score(batch, ...)`.

- `FrozenCopy`: full fine-tuning (the default). A second copy of the weights, one forward per step; token KL.
- `AdapterDisabled`: a PEFT (LoRA) policy. No second copy: the policy's forward with its adapter off; token KL.
- `Precomputed`: `module.precompute_ref=true`. One pass over every pair at fit start (cached on disk across runs),
  then a lookup; a frozen copy's memory is freed. No token KL.
- `NoReference`: a reference-free loss (SimPO, ORPO, SFT) with `module.compute_kl=false`. Nothing.

`build_reference` picks the kind from the module's settings: the one place that decides. A reference never
receives gradients, never leaves eval mode and is never written to checkpoints (`DPOModule.on_save_checkpoint`).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from . import refcache
from .batches import PairBatch
from .logprobs import PairScorer, ResponseStates, is_peft_model
from .losses import PairLogps, PreferenceLoss
from .paths import default_cache_dir

log = logging.getLogger(__name__)


@dataclass
class ReferenceScores:
    logps: PairLogps | None  # None: no reference log-probs (a reference-free loss ignores them)
    kl: Tensor | None = None  # [N] exact KL(policy || reference) per response token, when asked and possible


class Reference(nn.Module):
    """Base: `score` gives the reference log-probs of a batch's pairs (and the token KL when it can); `run()`
    yields a model that can generate, where there is one."""

    has_token_kl = False  # can give the exact token KL (needs a live model)
    holds_weights = False  # keeps a model's weights of its own in memory

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


class LiveReference(Reference):
    """A reference that runs a model every step."""

    has_token_kl = True

    @property
    def can_run(self) -> bool:
        return True

    @torch.no_grad()
    def score(
        self, batch: PairBatch, scorer: PairScorer, policy: PairLogps, policy_states: ResponseStates | None = None
    ) -> ReferenceScores:
        with self.run() as model:
            states = scorer.states(model, batch)
            logps = scorer.pairs(states)
            return ReferenceScores(logps, scorer.kl(policy_states, states) if policy_states is not None else None)


class FrozenCopy(LiveReference):
    """A frozen copy of the starting model, held beside the policy (replicated or sharded with it)."""

    holds_weights = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> FrozenCopy:
        return super().train(False)  # always eval (no dropout), whatever Lightning asks

    @contextmanager
    def run(self) -> Iterator[nn.Module]:
        yield self.model

    def frozen_model(self) -> nn.Module:
        return self.model


class AdapterDisabled(LiveReference):
    """The PEFT policy itself with its adapter disabled: the base weights, no second copy."""

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "policy", policy)  # not registered: its parameters belong to DPOModule.policy

    @contextmanager
    def run(self) -> Iterator[nn.Module]:
        with self.policy.disable_adapter():
            yield self.policy


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


class NoReference(Reference):
    """No reference at all: for reference-free losses that log no KL."""

    def score(
        self, batch: PairBatch, scorer: PairScorer, policy: PairLogps, policy_states: ResponseStates | None = None
    ) -> ReferenceScores:
        return ReferenceScores(None)


def build_reference(
    policy: nn.Module,
    loss: PreferenceLoss,
    model: nn.Module | None = None,
    precompute: bool = False,
    compute_kl: bool = True,
    cache_dir: str | None = None,
) -> Reference:
    """The reference a run needs, from the module's settings:
    - the loss needs no reference and no KL is asked for: `NoReference`;
    - else a live one: `model` frozen if given, the adapter-disabled policy for a PEFT policy, else a frozen copy
      of the policy as it is now (its starting weights);
    - `precompute` (and the loss uses reference log-probs): that live one wrapped in `Precomputed`."""
    if not loss.requires_reference and not compute_kl:
        return NoReference()
    if model is not None:
        live: LiveReference = FrozenCopy(model)
    elif is_peft_model(policy):
        live = AdapterDisabled(policy)
    else:
        live = FrozenCopy(copy.deepcopy(policy))
    if precompute and loss.requires_reference:
        return Precomputed(live, cache_dir)
    if precompute:
        log.info(
            "module.precompute_ref=true, but %s uses no reference log-probs: nothing to precompute", type(loss).__name__
        )
    return live


__all__ = [
    "AdapterDisabled",
    "FrozenCopy",
    "LiveReference",
    "NoReference",
    "Precomputed",
    "Reference",
    "ReferenceScores",
    "build_reference",
]
