"""A judge's verdicts as figures: the win/tie/loss and win rate of one set of answers against another (Wilson
interval; each side's mean score, BCa), and the judge's own accuracy on held-out pairs (how far to trust it)."""

from __future__ import annotations

from typing import Any

from ..core.statistics import bca_mean, proportion
from ..data.text import Prompt
from ..judges.base import Columns, Comparison, compare


def win_rate(
    comparison: Comparison,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    names: tuple[str, str] = ("dpo", "base"),
) -> dict[str, Any]:
    """Win/tie/loss of the first answers against the second. The win rate counts a tie as half a win, with a
    Wilson interval; with a scoring judge, each side's mean score has a BCa interval (`reward_<name>` for the two
    `names`); with an order-swapping judge, `order_consistency` is the share of verdicts both orders agreed on."""
    o = comparison.outcomes
    rate = proportion(o, confidence)
    result: dict[str, Any] = {
        "wins": int((o == 1).sum()),
        "ties": int((o == 0.5).sum()),
        "losses": int((o == 0).sum()),
        "win_rate": rate.value,
        "ci_low": rate.low,
        "ci_high": rate.high,
    }
    if comparison.first_scores is not None:
        for name, scores in zip(names, (comparison.first_scores, comparison.second_scores)):
            result[f"reward_{name}"] = bca_mean(scores, resamples, confidence, seed).as_dict()
    if comparison.consistent is not None:
        result["order_consistency"] = proportion(comparison.consistent.double(), confidence).as_dict()
    return result


def judge_accuracy(
    judge: Any,
    prompts: list[Prompt],
    chosen: list[str],
    rejected: list[str],
    confidence: float = 0.95,
    columns: Columns | None = None,
) -> dict[str, Any]:
    """How often the judge prefers the chosen response of a held-out pair to the rejected one (a tie counts half;
    Wilson interval); an order-swapping judge also says how often its two orders agreed."""
    comparison = compare(judge, prompts, chosen, rejected, columns)
    result = {**proportion(comparison.outcomes, confidence).as_dict(), "pairs": len(prompts)}
    if comparison.consistent is not None:
        result["order_consistency"] = proportion(comparison.consistent.double(), confidence).as_dict()
    return result
