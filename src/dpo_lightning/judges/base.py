"""What every judge is: `compare(prompts, first, second)` -> a `Comparison` (1 where the first answer wins, 0 where it
loses, 0.5 for a tie), and for a judge that scores answers one by one also `score(prompts, answers)`. Both take
`columns`, the data rows' other fields (a problem's `answer`), one entry per answer; a judge that needs none
ignores them. Win rates, the judge's accuracy on held-out pairs, the online loop's pairs and the blind reading's
second judge all go through these two calls.

- `RewardJudge` (reward.py): a sequence-classification reward model;
- `LLMJudge` (llm.py): a chat model asked which answer is better, in both orders;
- `FunctionJudge` (functions.py): reward functions (`exact_match`, `format`, a user's own), as TRL's reward_funcs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor

from ..data.text import Prompt

Columns = dict[str, Sequence[Any]]  # a data row's other fields, one entry per answer (e.g. {"answer": [...]})


@dataclass
class Comparison:
    """A judge's verdicts on (first, second) answers to the same prompts. `outcomes`: 1 first wins, 0 it loses,
    0.5 tie. A scoring judge adds each answer's score; an order-swapping judge says where its two orders agreed."""

    outcomes: Tensor
    first_scores: Tensor | None = None
    second_scores: Tensor | None = None
    consistent: Tensor | None = None  # LLM judge: True where both orders gave the same verdict


class Judge(Protocol):
    """A judge's interface (`name` and `kind` are shown in reports)."""

    name: str
    kind: str

    def compare(
        self, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str], columns: Columns | None = None
    ) -> Comparison: ...


def outcomes_from_scores(first: Tensor, second: Tensor, tie_tolerance: float = 0.0) -> Tensor:
    diff = first - second
    return (diff > tie_tolerance).double() + 0.5 * (diff.abs() <= tie_tolerance).double()


def compare(
    judge: Any, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str], columns: Columns | None = None
) -> Comparison:
    """`judge.compare`, with the data's columns where there are any (a judge written before columns existed, with
    `compare(prompts, first, second)`, still works where none are given)."""
    if columns:
        return judge.compare(prompts, first, second, columns=columns)
    return judge.compare(prompts, first, second)


def score(judge: Any, prompts: Sequence[Prompt], answers: Sequence[str], columns: Columns | None = None) -> Tensor:
    """`judge.score`, with the data's columns where there are any (as `compare`)."""
    if columns:
        return judge.score(prompts, answers, columns=columns)
    return judge.score(prompts, answers)
