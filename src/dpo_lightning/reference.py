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
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from . import refcache
from .batches import PairBatch
from .logprobs import PairScorer, ResponseStates
from .losses import PairLogps, PreferenceLoss
from .models.embedded import default_cache_dir
from .models.lora import is_peft_model

if TYPE_CHECKING:
    from .module import DPOModule

log = logging.getLogger(__name__)


@dataclass
class ReferenceScores:
    logps: PairLogps | None  # None: no reference log-probs (a reference-free loss ignores them)
    kl: Tensor | None = None  # [N] exact KL(policy || reference) per response token, when asked and possible


class Reference(nn.Module):
    """Base: `score` gives the reference log-probs of a batch's pairs (and the token KL when it can); `run()`
    yields a model that can generate, where there is one; `prepare` runs once at fit start."""

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

    def prepare(self, module: DPOModule) -> None:
        """Called at fit start, once the trainer, the device and the data exist."""

    def setup(self, module: DPOModule) -> None:
        """Called from `DPOModule.setup`, before a strategy shards or wraps the model."""

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
    weights as in training. The cache key is taken in `setup`, from the whole weights, before they are sharded."""

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
            raise RuntimeError("the precomputed reference was not prepared (DPOModule.on_fit_start computes it)")
        chosen, rejected = self.logps.lookup(batch.pair_keys)
        return ReferenceScores(
            PairLogps(
                chosen.to(policy.chosen.dtype),
                rejected.to(policy.rejected.dtype),
                policy.chosen_tokens,
                policy.rejected_tokens,
            )
        )

    def setup(self, module: DPOModule) -> None:
        if self.key is None and self.logps is None and self.live is not None:
            trainer, scorer = module.trainer, module.scorer
            with self.live.run() as model:  # the same key as before this class existed: old cache files still serve
                self.key = refcache.fingerprint(model, f"precision={trainer.precision}|fused_head={scorer.fused_head}")

    def prepare(self, module: DPOModule) -> None:
        if self.logps is None:
            self.logps = self._compute(module).to(module.device)
        if self.live is not None and self.live.holds_weights:
            self.live = None  # its numbers are all cached: free its memory
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _compute(self, module: DPOModule) -> refcache.ReferenceLogps:
        trainer = module.trainer
        self.setup(module)  # no-op when DPOModule.setup took the key already
        path = Path(self.cache_dir or default_cache_dir()) / "ref_logps" / f"{self.key}.pt"
        root = trainer.strategy.model if _sharded(trainer) else None
        score = self.scorer(module, root, trainer.precision_plugin.forward_context)
        loader = trainer.datamodule.all_pairs_dataloader()
        return refcache.load_or_compute(
            path, score, loader, trainer.global_rank, trainer.world_size, lockstep=root is not None
        )

    def scorer(
        self, module: DPOModule, root: nn.Module | None = None, context: Callable[[], Any] = nullcontext
    ) -> Callable[[PairBatch], tuple[Tensor, Tensor]]:
        """`score(batch) -> (chosen, rejected)` reference log-probs: the live model run directly, or, with `root`
        (the sharding wrapper around `module`), inside the root's forward."""

        @torch.no_grad()
        def score(batch: PairBatch) -> tuple[Tensor, Tensor]:
            batch = module.transfer_batch_to_device(batch, module.device, 0)
            with context(), self.live.run() as model:

                def reference_pass(b: PairBatch) -> PairLogps:
                    return module.scorer.pairs(module.scorer.states(model, b))

                pairs = reference_pass(batch) if root is None else through_root(root, module, reference_pass, batch)
            return pairs.chosen, pairs.rejected

        return score


def _sharded(trainer) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(trainer.strategy, FSDPStrategy)


def through_root(root: nn.Module, module: nn.Module, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` run as the forward of `module` called by its wrapper `root` (FSDP's root unit gathers its
    parameters, and the nested units theirs, as for a training step), as Lightning redirects training_step."""
    original = module.forward

    def forward(*inner: Any) -> Any:
        module.forward = original
        return fn(*inner)

    module.forward = forward
    try:
        return root(*args)
    finally:
        module.forward = original


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
