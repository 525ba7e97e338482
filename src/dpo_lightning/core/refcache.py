"""Reference log-probs computed once, before training, and cached on disk (`module.precompute_ref=true`).

The reference is frozen, so its log-probs of each pair never change: computing them once saves the reference
forward of every later step, epoch and sweep job (a beta or loss sweep over the same model and data reuses one
file). Entries are keyed by a hash of each pair's token ids (`data.collate.pair_key`), so a different dataset,
subset or tokenization simply adds entries; the file is named by a fingerprint of the reference weights, config and
numeric precision, so a different model never reads another's numbers. Writes take a file lock and replace the file
atomically; a job that finds every pair cached computes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import Tensor, nn

log = logging.getLogger(__name__)


@dataclass
class ReferenceLogps:
    """Per-pair summed reference log-probs, sorted by pair key for lookup on the device."""

    keys: Tensor  # [n] int64, sorted
    chosen: Tensor  # [n]
    rejected: Tensor  # [n]

    @classmethod
    def build(cls, keys: Tensor, chosen: Tensor, rejected: Tensor) -> ReferenceLogps:
        keys, order = torch.unique(keys, sorted=True, return_inverse=True)  # duplicates: one entry per key
        first = torch.empty_like(keys).scatter_(0, order, torch.arange(order.numel(), device=order.device))
        return cls(keys, chosen[first], rejected[first])

    @classmethod
    def empty(cls) -> ReferenceLogps:
        return cls(torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0))

    def __len__(self) -> int:
        return self.keys.numel()

    def _index(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        idx = torch.searchsorted(self.keys, keys.to(self.keys.device)).clamp(max=max(len(self) - 1, 0))
        found = self.keys[idx] == keys.to(self.keys.device) if len(self) else torch.zeros_like(keys, dtype=torch.bool)
        return idx, found

    def covers(self, keys: Tensor) -> bool:
        return bool(self._index(keys)[1].all())

    def lookup(self, keys: Tensor) -> tuple[Tensor, Tensor]:
        idx, found = self._index(keys)
        if not bool(found.all()):
            raise KeyError(
                f"{int((~found).sum())} pair(s) of this batch have no cached reference log-probs "
                "(the cache covers the training and validation pairs of this run)"
            )
        return self.chosen[idx], self.rejected[idx]

    def merged(self, other: ReferenceLogps) -> ReferenceLogps:
        if not len(other):
            return self
        return ReferenceLogps.build(
            torch.cat([other.keys.cpu(), self.keys.cpu()]),
            torch.cat([other.chosen.cpu(), self.chosen.cpu().to(other.chosen.dtype)]),
            torch.cat([other.rejected.cpu(), self.rejected.cpu().to(other.rejected.dtype)]),
        )

    def to(self, device: torch.device | str) -> ReferenceLogps:
        return ReferenceLogps(self.keys.to(device), self.chosen.to(device), self.rejected.to(device))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"keys": self.keys.cpu(), "chosen": self.chosen.cpu(), "rejected": self.rejected.cpu()}, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ReferenceLogps:
        """The cached entries at `path` (none if it does not exist). A damaged file (truncated, not a cache, or with
        columns of different lengths) is reported and treated as empty: every pair is recomputed and the file
        rewritten whole."""
        if not path.is_file():
            return cls.empty()
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            cache = cls(data["keys"], data["chosen"], data["rejected"])
            lengths = {len(cache.keys), cache.chosen.numel(), cache.rejected.numel()}
            if (
                len(lengths) != 1
                or cache.keys.dtype != torch.long
                or not bool((cache.keys[1:] > cache.keys[:-1]).all())
            ):
                raise ValueError(f"inconsistent columns (lengths {sorted(lengths)}, keys {cache.keys.dtype})")
            return cache
        except Exception as error:  # noqa: BLE001  (any unreadable file: recompute rather than fail the run)
            log.warning(
                "reference log-prob cache %s is damaged (%s: %s): ignoring it; its pairs are recomputed and "
                "the file rewritten",
                path,
                type(error).__name__,
                str(error)[:200],
            )
            return cls.empty()


# Odd multipliers of the weight checksum (any odd number is invertible modulo 2**64).
_MIX = ((0x9E3779B97F4A7C15 - (1 << 64), 0x632BE59BD9B4E019), (0xD6E8FEB86659FD93 - (1 << 64), 0x7F4A7C159E3779B9))
_CHUNK = 1 << 24  # elements reduced at a time (a few 128 MB int64 temporaries on the device)


def fingerprint(model: nn.Module, extra: str = "") -> str:
    """A hash of the model's parameters and buffers (names, dtypes, shapes, and a checksum of their bits), its
    config and `extra`. Each tensor is reduced where it lives (a GPU's weights never travel to the host: 16 bytes
    per tensor do), by `weight_checksum`, which changes whenever any single value changes."""
    h = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    h.update((config.to_json_string() if config is not None else type(model).__name__).encode())
    h.update(extra.encode())
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    for name, t in sorted(tensors, key=lambda item: item[0]):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{weight_checksum(t)}".encode())
    return h.hexdigest()


@torch.no_grad()
def weight_checksum(t: Tensor) -> str:
    """Two position-weighted sums of the tensor's bits, sum_i bits_i * (a_k * i + b_k | 1) modulo 2**64, computed on
    the tensor's device. Integer arithmetic wraps exactly, so the result is the same on every device and in any
    reduction order. Changing one value changes its bits by d, 0 < |d| < 2**32, and each sum by d times an odd
    number, which is never 0 modulo 2**64: any single-value change changes the checksum."""
    flat = t.detach().reshape(-1)
    width = flat.element_size()
    as_int = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[width]
    bits = flat.view(as_int) if flat.dtype != torch.bool else flat.to(torch.uint8)
    sums = [torch.zeros((), dtype=torch.int64, device=flat.device) for _ in _MIX]
    for start in range(0, bits.numel(), _CHUNK):
        chunk = bits[start : start + _CHUNK].to(torch.int64)
        index = torch.arange(start, start + chunk.numel(), dtype=torch.int64, device=flat.device)
        for k, (a, b) in enumerate(_MIX):
            sums[k] += (chunk * ((index * a + b) | 1)).sum()
    return "-".join(f"{int(x) & ((1 << 64) - 1):016x}" for x in sums)


def compute(
    score: Callable[[Any], tuple[Tensor, Tensor]],
    batches: Iterable[Any],
    have: ReferenceLogps,
    rank: int = 0,
    world_size: int = 1,
    lockstep: bool = False,
) -> ReferenceLogps:
    """Score (with `score(batch) -> (chosen, rejected)`) the batches this rank owns whose pairs are not all in
    `have`; batch i belongs to rank i % world_size. A batch is anything with `pair_keys` (the layouts of
    `batches`). Returns only the new entries, gathered from every rank.

    `lockstep` (a model sharded across the ranks, whose forward is collective): every rank calls `score` equally
    often, the ranks with fewer batches of their own scoring one again and discarding the result."""
    keys, chosen, rejected = [], [], []
    mine, first = [], None
    for i, batch in enumerate(batches):
        first = batch if first is None else first
        if i % world_size == rank and not have.covers(batch.pair_keys):
            mine.append(batch)
    calls = len(mine)
    distributed = world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()
    if lockstep and distributed:
        count = torch.tensor([calls], dtype=torch.long)
        if torch.distributed.get_backend() == "nccl":
            count = count.cuda()
        torch.distributed.all_reduce(count, op=torch.distributed.ReduceOp.MAX)
        calls = int(count.item())
    for j in range(calls):
        if j >= len(mine):  # lockstep filler: the collective forward, its numbers not kept
            score(mine[-1] if mine else first)
            continue
        c, r = score(mine[j])
        keys.append(mine[j].pair_keys.cpu())
        chosen.append(c.detach().cpu())
        rejected.append(r.detach().cpu())
    new = (
        ReferenceLogps.build(torch.cat(keys), torch.cat(chosen), torch.cat(rejected))
        if keys
        else ReferenceLogps.empty()
    )
    if distributed:
        parts: list[ReferenceLogps | None] = [None] * world_size
        torch.distributed.all_gather_object(parts, new)
        new = ReferenceLogps.empty()
        for part in parts:
            new = new.merged(part)
    return new


def load_or_compute(
    path: Path | None,
    score: Callable[[Any], tuple[Tensor, Tensor]],
    batches: Iterable[Any],
    rank: int = 0,
    world_size: int = 1,
    lockstep: bool = False,
) -> ReferenceLogps:
    """The cached entries at `path` plus those computed now for the pairs it lacks (then saved, by rank 0)."""
    have = ReferenceLogps.load(path) if path is not None else ReferenceLogps.empty()
    new = compute(score, batches, have, rank, world_size, lockstep)
    log.info(
        "reference log-probs: %d pairs from the cache%s, %d computed now",
        len(have),
        f" {path}" if path is not None else "",
        len(new),
    )
    if path is not None and rank == 0 and len(new):
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            ReferenceLogps.load(path).merged(new).save(path)  # re-read: another job may have added entries
    return have.merged(new)
