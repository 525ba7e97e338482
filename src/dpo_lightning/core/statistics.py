"""Confidence intervals that hold at the sample sizes of an evaluation (tens of prompts, not thousands).

- Proportions (accuracies, win rates): the **Wilson score interval**. A percentile bootstrap collapses on them: 50
  correct of 50 resamples to 50 of 50 every time and reports [1, 1]; Wilson gives [0.929, 1].
- Means (reward margins, judge rewards): the **BCa bootstrap** (bias-corrected and accelerated; Efron 1987, through
  `scipy.stats.bootstrap`), seeded, so a report is reproducible. It corrects the percentile interval for the skew
  and bias of the mean's distribution.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from torch import Tensor

PROPORTION_METHOD = "Wilson score interval"
MEAN_METHOD = "BCa bootstrap"


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high}


def wilson(successes: float, n: int, confidence: float = 0.95) -> Interval:
    """The proportion successes/n with its Wilson score interval (successes may count a tie as half)."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(p, float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def proportion(outcomes: Tensor, confidence: float = 0.95) -> Interval:
    """Wilson interval of the mean of 0/1 outcomes (0.5 for a tie counts half)."""
    values = outcomes.double().flatten()
    return wilson(float(values.sum()), values.numel(), confidence)


def bca_mean(values: Tensor, resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean with its BCa bootstrap interval. Constant data (no spread to resample) gets a zero-width interval."""
    data = values.double().flatten().cpu().numpy()
    if data.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    mean = float(data.mean())
    if data.size < 2 or np.ptp(data) == 0:
        return Interval(mean, mean, mean)
    low, high = bca((data,), np.mean, resamples, confidence, seed)
    return Interval(mean, low, high)


def bca(
    data: tuple[np.ndarray, ...], statistic: Callable, resamples: int, confidence: float, seed: int, **options: Any
) -> tuple[float, float]:
    """The BCa bootstrap interval of `statistic` over `data` (seeded; `options` go to `scipy.stats.bootstrap`, e.g.
    paired=True for a statistic of several arrays). Where BCa is undefined (nearly constant resamples, or a statistic
    that runs off on some of them), the percentile interval of the same resamples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # BCa undefined on some resamples: handled below
        result = stats.bootstrap(
            data,
            statistic,
            n_resamples=resamples,
            confidence_level=confidence,
            method="BCa",
            rng=np.random.default_rng(seed),
            **options,
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = np.quantile(result.bootstrap_distribution, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)


def jackknife(
    statistic: Callable[[np.ndarray], float],
    n: int,
    confidence: float = 0.95,
    bounds: tuple[float, float] = (-math.inf, math.inf),
) -> Interval:
    """Any statistic of n items (called with an array of item indices) with the jackknife's normal interval: the
    standard error from the n leave-one-out values (Efron & Stein 1981). For statistics that are not means and
    that repeated items distort, such as distinct-n over pooled answers: a bootstrap resample repeats whole answers,
    which lowers distinct-n so far that not even BCa's bias correction brings the interval back around the value.
    `bounds`: the statistic's range, which the interval is clipped to (distinct-n lies in [0, 1])."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    everything = np.arange(n)
    value = float(statistic(everything))
    if n < 2:
        return Interval(value, value, value)
    leave_one_out = np.array([statistic(np.delete(everything, i)) for i in range(n)], dtype=np.float64)
    se = math.sqrt((n - 1) / n * float(((leave_one_out - leave_one_out.mean()) ** 2).sum()))
    z = stats.norm.ppf(0.5 + confidence / 2)
    low, high = bounds
    return Interval(value, float(max(low, value - z * se)), float(min(high, value + z * se)))


def mcnemar(only_first: int, only_second: int) -> float:
    """The exact (binomial) McNemar test of a paired difference between two proportions: `only_first` items the
    first got right and the second wrong, `only_second` the reverse; the two-sided p-value of as uneven a split
    under no difference (each discordant item a fair coin): min(1, 2 P(X <= min)), X ~ Binomial(n, 1/2)."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    return float(min(1.0, 2 * stats.binom.cdf(min(only_first, only_second), n, 0.5)))
