"""Deprecated (0.1's path): the judges are in `dpo_lightning.judges`, their verdicts' figures in
`dpo_lightning.evaluation.verdicts`, `as_text` in `dpo_lightning.data.text`. This module goes in the next release."""

import warnings

from ..data.text import Prompt, as_text
from ..judges.base import Comparison, outcomes_from_scores
from ..judges.reward import RewardJudge
from .verdicts import judge_accuracy, win_rate

warnings.warn(
    "dpo_lightning.evaluation.judge moved: dpo_lightning.judges (RewardJudge, Comparison), "
    "dpo_lightning.evaluation.verdicts (win_rate, judge_accuracy), dpo_lightning.data.text (as_text)",
    DeprecationWarning,
    stacklevel=2,
)
__all__ = ["Comparison", "Prompt", "RewardJudge", "as_text", "judge_accuracy", "outcomes_from_scores", "win_rate"]
