"""The precomputed reference's pass (`module.precompute_ref=true`), on the Lightning side: it needs the trainer (its
strategy, precision, rank and data), which the reference itself (`core/reference.Precomputed`) never sees.

`take_reference_key` runs in `DPOModule.setup`, before a strategy shards the weights: the cache key is a fingerprint
of the whole reference. `precompute_reference` runs at fit start: every training and validation pair once, read from
the cache file where it has them (`core/refcache`), computed now where it does not. Under FSDP or FSDP2 the pass
runs as the forward of the root unit (`through_root`), as Lightning runs training_step, so each unit gathers its
weights as in training and every rank calls it equally often.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..core import refcache
from ..core.batches import PairBatch
from ..core.generation import bar_file
from ..core.losses import PairLogps
from ..core.reference import Precomputed
from .strategies import sharded_root


def take_reference_key(module: LightningModule) -> None:
    """The precomputed reference's cache key, from the whole weights and what else shapes its numbers (the same key
    as before this module existed: old cache files still serve)."""
    reference = module.reference
    if isinstance(reference, Precomputed):
        reference.take_key(f"precision={module.trainer.precision}|fused_head={module.scorer.fused_head}")


def precompute_reference(module: LightningModule) -> None:
    """Every training and validation pair's reference log-probs, from the cache or computed now; then the reference
    looks them up (and a frozen copy is freed)."""
    reference = module.reference
    if not isinstance(reference, Precomputed):
        return
    if reference.logps is not None:  # given: nothing to compute
        reference.use()
        return
    trainer = module.trainer
    take_reference_key(module)  # a no-op when setup took it
    root = sharded_root(trainer)
    loader = all_pairs_loader(trainer.datamodule)
    cached = reference.cache_path is not None and Path(reference.cache_path).is_file()
    total = None if cached else pairs_of_rank(len(loader.dataset), loader.batch_size, trainer.global_rank,
                                              trainer.world_size)  # fmt: skip
    score = ScoringProgress(batch_scorer(module, root, trainer.precision_plugin.forward_context), total,
                            shown=trainer.is_global_zero)  # fmt: skip
    try:
        logps = refcache.load_or_compute(
            reference.cache_path, score, loader, trainer.global_rank, trainer.world_size, lockstep=root is not None
        )
    finally:
        score.close()
    reference.use(logps.to(module.device))


def pairs_of_rank(pairs: int, batch_size: int, rank: int, world_size: int) -> int:
    """How many of `pairs` (in batches of `batch_size`) rank `rank` scores: batch i is rank i % world_size's."""
    sizes = [min(batch_size, pairs - start) for start in range(0, pairs, batch_size)]
    return sum(sizes[rank::world_size])


class ScoringProgress:
    """`score` counting its pairs on a bar (pairs/s) that starts at the first batch scored: none at all when the
    cache holds every pair. `total`: the pairs to score (None where a cache file may hold some: count and rate)."""

    def __init__(self, score: Callable[[PairBatch], tuple[Tensor, Tensor]], total: int | None, shown: bool) -> None:
        self.score, self.total, self.shown, self.bar = score, total, shown, None

    def __call__(self, batch: PairBatch) -> tuple[Tensor, Tensor]:
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc="reference log-probs", unit="pair", disable=not self.shown,
                            file=bar_file())  # fmt: skip
        out = self.score(batch)
        self.bar.update(len(batch.pair_keys))
        return out

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def all_pairs_loader(datamodule: Any) -> DataLoader:
    """Every training and validation pair once, in order: what the reference log-prob cache must cover."""
    if getattr(datamodule, "streaming", False):
        raise ValueError("module.precompute_ref needs every training pair in advance: not with data.streaming")
    return DataLoader(
        datamodule.train_tokens + datamodule.val_tokens,
        batch_size=datamodule.eval_batch_size,
        shuffle=False,
        collate_fn=datamodule.collator,
        num_workers=datamodule.num_workers,
    )


def batch_scorer(
    module: LightningModule, root: nn.Module | None = None, context: Callable[[], Any] = nullcontext
) -> Callable[[PairBatch], tuple[Tensor, Tensor]]:
    """`score(batch) -> (chosen, rejected)` reference log-probs of a batch, on the module's device: the live
    reference run directly, or, with `root` (the sharding wrapper around `module`), inside the root's forward."""
    reference_pass = module.reference.pair_logps(module.scorer)

    @torch.no_grad()
    def score(batch: PairBatch) -> tuple[Tensor, Tensor]:
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        with context():
            pairs: PairLogps = (
                reference_pass(batch) if root is None else through_root(root, module, reference_pass, batch)
            )
        return pairs.chosen, pairs.rejected

    return score


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
