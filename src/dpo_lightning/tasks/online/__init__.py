"""Online (iterative) DPO in rounds: sample answers from the policy, judge them, pair, train, evaluate."""

from .loop import train_online

__all__ = ["train_online"]
