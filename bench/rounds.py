"""Rounds of the benchmark: every variant runs several times, interleaved, and is reported by its median.

One child process per variant per round, in the order A B C A B C ... after an untimed warm round (A B C) that
fills every kernel, autotuning and compile cache on disk for both libraries, so no variant pays for them while
timed and a slow stretch of the machine hits every variant alike. A variant whose seconds per step spread by more
than `WIDE_SPREAD` of its median (max - min over median) gets more rounds, up to `--max-rounds`, and is named in
the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

WIDE_SPREAD = 0.10


def spread(seconds: list[float]) -> float:
    return (max(seconds) - min(seconds)) / statistics.median(seconds) if seconds else 0.0


def run_rounds(
    variants: list[str],
    run: Callable[[str], dict],
    rounds: int,
    max_rounds: int,
    warm: bool = True,
    warm_variant: Callable[[str], str] = lambda v: v,
    on_result: Callable[[str, int, dict], None] = lambda v, i, r: None,
    earlier: dict[str, list[dict]] | None = None,
) -> dict[str, list[dict]]:
    """Every variant's results, round by round (`run(variant)` runs one child). Round 0 is the warm round when
    `warm` (its results are passed to `on_result` with index -1 and not kept); `warm_variant` may change what the
    warm round runs (e.g. add profiling). `earlier`: rounds already run (a resumed benchmark), continued."""
    if warm:
        for variant in variants:
            on_result(variant, -1, run(warm_variant(variant)))
    done: dict[str, list[dict]] = {v: list((earlier or {}).get(v, [])) for v in variants}
    while True:
        for variant in variants:
            done[variant].append(run(variant))
            on_result(variant, len(done[variant]) - 1, done[variant][-1])
        n = len(done[variants[0]])
        wide = any(spread(timings(done[v])) > WIDE_SPREAD for v in variants)
        if n >= max_rounds or (n >= rounds and not wide):
            return done


def timings(results: list[dict]) -> list[float]:
    return [r["seconds_per_step"] for r in results if "error" not in r]


def summarize(variant: str, results: list[dict], batch: int, peak_tflops: float) -> dict:
    """One row: the median seconds per step with its min and max, the largest peak memory, the MFU of the median."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return {"variant": variant, "error": results[-1].get("error", "no result") if results else "no result"}
    seconds = timings(ok)
    median = statistics.median(seconds)
    row = {k: v for k, v in ok[0].items() if k not in ("seconds_per_step", "pairs_per_second", "mfu")}
    row.update(
        variant=variant,
        seconds_per_step=median,
        seconds_min=min(seconds),
        seconds_max=max(seconds),
        spread=spread(seconds),
        rounds=seconds,
        failed_rounds=len(results) - len(ok),
        pairs_per_second=batch / median,
        peak_memory_gib=max(r["peak_memory_gib"] for r in ok),
    )
    if "flops_per_step" in ok[0]:
        row["mfu"] = ok[0]["flops_per_step"] / median / (peak_tflops * 1e12)
    return row
