"""The evaluation's intervals against known values: Wilson for proportions, BCa bootstrap for means."""

from __future__ import annotations

import math

import pytest
import torch

from dpo_lightning.core.statistics import bca_mean, proportion, wilson


@pytest.mark.parametrize(
    "successes, n, low, high",
    [
        # 50 of 50: a percentile bootstrap says [1, 1]; Wilson's lower bound is n / (n + z^2).
        (50, 50, 50 / (50 + 1.959964**2), 1.0),
        # Textbook values (Newcombe 1998, Table I, method 3 without continuity correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_against_published_values(successes, n, low, high):
    ci = wilson(successes, n)
    assert ci.value == pytest.approx(successes / n)
    assert (ci.low, ci.high) == pytest.approx((low, high), abs=1e-4)


def test_wilson_from_outcomes_and_other_levels():
    assert proportion(torch.tensor([1.0, 1.0, 0.0, 0.5])).value == pytest.approx(0.625)
    narrow, wide = wilson(7, 10, confidence=0.8), wilson(7, 10, confidence=0.99)
    assert wide.low < narrow.low < 0.7 < narrow.high < wide.high
    assert math.isnan(wilson(0, 0).value)


def test_bca_matches_the_normal_interval_for_symmetric_data():
    values = torch.randn(400, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ci = bca_mean(values, resamples=4000, seed=1)
    se = values.std().item() / math.sqrt(len(values))
    assert ci.value == pytest.approx(values.mean().item())
    assert ci.low == pytest.approx(values.mean().item() - 1.96 * se, abs=0.15 * se)
    assert ci.high == pytest.approx(values.mean().item() + 1.96 * se, abs=0.15 * se)


def test_bca_corrects_for_skew_and_is_reproducible():
    g = torch.Generator().manual_seed(0)
    values = torch.empty(60, dtype=torch.float64).exponential_(1.0, generator=g) ** 2  # strongly right-skewed
    ci = bca_mean(values, seed=3)
    mean = values.mean().item()
    assert ci.high - mean > mean - ci.low  # the interval leans toward the long tail
    assert bca_mean(values, seed=3) == ci  # seeded
    constant = bca_mean(torch.full((10,), 2.5))
    assert (constant.value, constant.low, constant.high) == (2.5, 2.5, 2.5)


def test_jackknife_of_the_mean_is_the_textbook_standard_error():
    """For the mean, the jackknife's standard error is exactly s / sqrt(n) (s with n - 1): the interval by hand."""
    import numpy as np

    from dpo_lightning.core.statistics import jackknife

    data = np.array([2.0, 4.0, 4.0, 5.0, 7.0, 9.0])
    ci = jackknife(lambda idx: data[idx].mean(), len(data))
    half = 1.959964 * data.std(ddof=1) / math.sqrt(len(data))
    assert ci.value == pytest.approx(data.mean())
    assert (ci.low, ci.high) == pytest.approx((data.mean() - half, data.mean() + half), abs=1e-5)


def test_a_jackknife_interval_stays_in_the_statistics_range():
    """distinct-2 of two answers, one a loop (the first hour's evaluation on 2 held-out pairs): the normal interval
    reached -0.35; distinct-n lies in [0, 1], and so does its interval."""
    from dpo_lightning.evaluation.diversity import diversity

    loop = "I'm so glad you're here, " * 6
    varied = "A dirty joke: what is the most expensive thing you have ever bought?"
    d = diversity([loop, varied], resamples=200)
    assert 0.0 <= d.distinct_2.low <= d.distinct_2.value <= d.distinct_2.high <= 1.0
