"""A training DataLoader that resumes mid-epoch exactly where a checkpoint left it.

The order is a seeded permutation per epoch (Lightning calls `set_epoch`), so it is the same in a resumed run.
Under several processes each rank takes every world_size-th index of that permutation (padded by wrapping, as
DistributedSampler does), so a step of world_size ranks x batch b trains on the same pairs as one process with
batch world_size x b.
The datamodule saves `position()` in every checkpoint (its own state_dict) and hands it to the new loader on resume
(`resume_at`). The position counts the batches actually trained on (the datamodule counts them as they reach the
model), not those Lightning prefetched. (Not Lightning's loader-state hooks: Lightning builds the train loader
before restoring loop state when `estimated_stepping_batches` is read, and then never applies them.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from ..core import seeds


class EpochSampler(Sampler[int]):
    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.skip = epoch, 0

    def __iter__(self):
        order = torch.randperm(
            self.size, generator=torch.Generator().manual_seed(seeds.epoch_order(self.seed, self.epoch))
        ).tolist()
        order = (order * self.world_size)[: len(self) * self.world_size][self.rank :: self.world_size]
        start, self.skip = self.skip, 0
        return iter(order[start:])

    def __len__(self) -> int:
        return -(-self.size // self.world_size)


class ResumableLoader(DataLoader):
    def __init__(self, dataset, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, **kwargs: Any) -> None:
        sampler = EpochSampler(len(dataset), seed, rank, world_size)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.batches_done = 0

    def __iter__(self):
        self.batches_done = self.sampler.skip // self.batch_size  # 0, or where a resumed epoch starts
        return super().__iter__()

    def position(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self.batches_done}

    def resume_at(self, position: dict[str, int]) -> None:
        self.sampler.epoch = position["epoch"]
        self.sampler.skip = position["batches_done"] * self.batch_size
