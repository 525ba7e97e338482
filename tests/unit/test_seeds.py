"""Every derived seed keeps the number it had before `core/seeds.py` existed, so that existing runs, caches and
files reproduce: the literal formulas of 0.1, one per seed."""

from __future__ import annotations

from dpo_lightning.core import seeds


def test_every_derived_seed_keeps_its_number():
    seed = 42
    assert seeds.epoch_order(seed, 3) == 42 + 3  # the epoch's permutation
    assert seeds.stream_window(seed, 2, 5) == 42 + 2 + 5 * 7_919_993  # a streamed window
    assert seeds.stream_window(seed, 2, 0) == seeds.epoch_order(seed, 2)  # window 0 is the in-memory order
    assert seeds.mixture_source(seed, 2) == 42 + 2 * 1_000_003  # a mixture's source
    assert seeds.mixture_block(seed, 7) == 42 * 31 + 7  # a streamed mixture's block of labels
    assert seeds.generation_batch(seed, 16) == 42 + 16  # a generation batch, a sampler's chunk
    assert seeds.round_prompts(seed, 2) == 42 + 7919 * 2  # an online round's prompts
    assert seeds.round_sampling(seed, 2) == 42 + 1_000_003 * 3  # its sampling
    assert seeds.round_sheet(seed, 2) == 44  # its blind sheet
    assert seeds.problem_split(0, 1) == 1_000_003  # the built-in problems' held-out split
