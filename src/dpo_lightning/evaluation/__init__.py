"""Compare a DPO-trained policy with its base model: scores, statistics, generations, judge, report."""

from .runner import evaluate, load_trained_policy

__all__ = ["evaluate", "load_trained_policy"]
