"""Judges: what decides which of two answers to the same prompt is better (a reward model, an LLM asked in both
orders, reward functions). Every judge answers `compare(prompts, first, second)` (base.py); evaluations, the online
loop and the blind reading all go through it."""

from .base import Columns, Comparison, Judge, compare, outcomes_from_scores, score
from .llm import LLMJudge
from .reward import RewardJudge

__all__ = ["Columns", "Comparison", "Judge", "LLMJudge", "RewardJudge", "compare", "outcomes_from_scores", "score"]
