"""Every seed the package derives from a run's seed, in one place, each a named function. Their numbers are those
the code used before this module existed, so existing runs, caches and files reproduce
(tests/unit/test_seeds.py checks each against its literal value)."""

from __future__ import annotations

SOURCE_STRIDE = 1_000_003  # between the sources of a mixture, the rounds of the online loop, the problem splits
WINDOW_STRIDE = 7_919_993  # between the windows of a streamed epoch
ROUND_PROMPTS_STRIDE = 7919  # between the online rounds' choices of prompts
MIX_BLOCK_FACTOR = 31


def epoch_order(seed: int, epoch: int) -> int:
    """The training order of an epoch (data/resumable.py; a streamed window 0 of that epoch too)."""
    return seed + epoch


def stream_window(seed: int, epoch: int, window: int) -> int:
    """The order of window `window` of a streamed epoch (window 0 is the in-memory epoch's order)."""
    return seed + epoch + window * WINDOW_STRIDE


def mixture_source(seed: int, source: int) -> int:
    """Source `source` of a mixture: its draws, and its stream's seeds."""
    return seed + source * SOURCE_STRIDE


def mixture_block(seed: int, block: int) -> int:
    """The order of the sources' labels within block `block` of a streamed mixture."""
    return seed * MIX_BLOCK_FACTOR + block


def generation_batch(seed: int, start: int) -> int:
    """The sampling of the generation batch that starts at row `start` (a sampler's chunk: its first prompt)."""
    return seed + start


def round_prompts(seed: int, r: int) -> int:
    """Online round r's choice of prompts."""
    return seed + ROUND_PROMPTS_STRIDE * r


def round_sampling(seed: int, r: int) -> int:
    """Online round r's sampling (and its cap on the pairs)."""
    return seed + SOURCE_STRIDE * (r + 1)


def round_sheet(seed: int, r: int) -> int:
    """Online round r's blind sheet of its pairs."""
    return seed + r


def problem_split(seed: int, split: int) -> int:
    """The built-in problems' split `split` (0 train, 1 test)."""
    return SOURCE_STRIDE * split + seed
