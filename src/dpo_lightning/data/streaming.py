"""Training pairs read, tokenized and shuffled on the fly (`data.streaming=true`), for sets larger than memory.

Each source is read in windows of `shuffle_buffer` kept pairs; a window is shuffled by a seeded permutation and
handed out, then the next is read. A source starts over when it ends (its next epoch, a new order), so the stream
never ends and `trainer.max_steps` sets the length of the run. With one window covering the whole set, the order is
exactly the in-memory one (`resumable.EpochSampler`: the permutation seeded by `seed + epoch`).

Several sources (`data=mixture`) are interleaved by a label sequence: per block of `MIX_BLOCK` pairs, each source
gets its share of the block (largest remainders of weight x block), in a seeded order. The proportions are exact per
block; the order is deterministic given the seed.

Under several processes every rank reads and tokenizes the whole stream and keeps every world_size-th pair of it,
so a step of world_size ranks x batch b trains on the same pairs as one process with batch world_size x b.

Resume is exact: every batch carries `stream_position`, the state after its last pair (per source: epoch, window,
the raw row where the window starts, pairs taken from it; the mixture's draw count). The datamodule keeps the
position of the last batch trained on and saves it in the checkpoint; a resumed stream skips the raw rows before
that window unparsed, re-reads the window, and continues after the pairs taken.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import torch

from ..core import seeds
from .tokenize import TokenizedPair

MIX_BLOCK = 1024

State = dict[str, int]


class SourceStream:
    """One source's pairs, forever: windows of `window` kept pairs, each shuffled.

    `rows()` opens the source and yields its raw rows (`readers.iter_rows`); `to_pair(where, row)` parses and
    tokenizes one (None: the row is left out, e.g. over-long or a skipped bad row).
    """

    def __init__(
        self, rows: Callable[[], Iterator], to_pair: Callable[[str, Any], TokenizedPair | None], window: int, seed: int
    ) -> None:
        self.rows, self.to_pair, self.window, self.seed = rows, to_pair, window, seed

    def order(self, epoch: int, window: int, size: int) -> list[int]:
        seed = seeds.stream_window(self.seed, epoch, window)
        return torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()

    def pairs(self, state: State | None = None) -> Iterator[tuple[TokenizedPair, State]]:
        """(pair, state after it), starting after `state` (None: from the beginning)."""
        state = dict(state or {"epoch": 0, "window": 0, "start_row": 0, "taken": 0})
        while True:
            rows = self.rows()
            row_index = state["start_row"]
            rows = islice(rows, row_index, None)  # rows before the window: skipped unparsed
            window_index, skip, empty_epoch = state["window"], state["taken"], True
            while True:
                start_row, kept = row_index, []
                for where, row in rows:
                    row_index += 1
                    pair = self.to_pair(where, row)
                    if pair is not None:
                        kept.append(pair)
                        if len(kept) == self.window:
                            break
                if not kept:
                    break
                empty_epoch = False
                order = self.order(state["epoch"], window_index, len(kept))
                for taken in range(skip, len(kept)):
                    after = {"epoch": state["epoch"], "window": window_index, "start_row": start_row}
                    yield kept[order[taken]], {**after, "taken": taken + 1}
                skip, window_index = 0, window_index + 1
                if len(kept) < self.window:
                    break
            if empty_epoch and state["window"] == 0 and state["taken"] == 0:
                raise ValueError("the training stream holds no pairs")
            state = {"epoch": state["epoch"] + 1, "window": 0, "start_row": 0, "taken": 0}


def largest_remainder(weights: list[float], total: int) -> list[int]:
    """Integer counts proportional to `weights` that sum to `total` exactly."""
    exact = [w / sum(weights) * total for w in weights]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: exact[i] - counts[i], reverse=True)[: total - sum(counts)]:
        counts[i] += 1
    return counts


def block_labels(weights: list[float], block: int, seed: int) -> list[int]:
    """The sources of one block of `MIX_BLOCK` mixed pairs: source i appears round(w_i * MIX_BLOCK) times (largest
    remainders), in a seeded order."""
    counts = largest_remainder(weights, MIX_BLOCK)
    labels = torch.repeat_interleave(torch.arange(len(weights)), torch.tensor(counts))
    order = torch.randperm(MIX_BLOCK, generator=torch.Generator().manual_seed(seeds.mixture_block(seed, block)))
    return labels[order].tolist()


class MixedStream:
    """Sources interleaved by `block_labels`; a single source passes straight through."""

    def __init__(self, sources: list[SourceStream], weights: list[float], seed: int) -> None:
        self.sources, self.weights, self.seed = sources, weights, seed

    def pairs(self, state: dict[str, Any] | None = None) -> Iterator[tuple[TokenizedPair, dict[str, Any]]]:
        state = state or {"draws": 0, "sources": [None] * len(self.sources)}
        positions = list(state["sources"])
        iters = [s.pairs(p) for s, p in zip(self.sources, positions)]
        draws, labels = state["draws"], [0] * MIX_BLOCK  # a single source: every draw is its own
        while True:
            if len(self.sources) > 1 and (draws % MIX_BLOCK == 0 or draws == state["draws"]):
                labels = block_labels(self.weights, draws // MIX_BLOCK, self.seed)  # once per block
            source = labels[draws % MIX_BLOCK]
            pair, positions[source] = next(iters[source])
            draws += 1
            yield pair, {"draws": draws, "sources": list(positions)}


class StreamingLoader:
    """Batches of this rank's share of a `MixedStream`, each carrying `stream_position` (the state after it).
    Endless: one Lightning epoch lasts until `trainer.max_steps`."""

    def __init__(
        self, stream: MixedStream, batch_size: int, collate_fn: Callable, rank: int = 0, world_size: int = 1
    ) -> None:
        self.stream, self.batch_size, self.collate_fn = stream, batch_size, collate_fn
        self.rank, self.world_size = rank, world_size
        self.start: dict[str, Any] | None = None

    def resume_at(self, position: dict[str, Any]) -> None:
        self.start = position

    def __iter__(self) -> Iterator[Any]:
        pairs = self.stream.pairs(self.start)
        while True:
            batch, state = [], None
            for _ in range(self.batch_size):
                for _ in range(self.world_size):  # one global position per rank; this rank keeps its own
                    item, state = next(pairs)
                    if state["draws"] % self.world_size == (self.rank + 1) % self.world_size:
                        mine = item
                batch.append(mine)
            collated = self.collate_fn(batch)
            collated.stream_position = state
            yield collated
