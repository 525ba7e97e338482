"""Reward functions as judges: `exact_match` on hand-written completions, `format`, a user's own function through
`_target_`, the weighted sum with completions no function can score, and a bad function's error naming it."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from conftest import CONF
from dpo_lightning.judges.functions import FunctionJudge, exact_match, final_answer, format


@pytest.mark.parametrize(
    "completion, reference, expected",
    [
        ("12 + 6 = 18. #### 18", "18", 1.0),  # GSM8K's marker
        (
            "12 + 6 = 18 apples. Sara now has 18 - 6 = 9 apples. #### 9",
            "18",
            0.0,
        ),  # a self-contradiction: the marker wins
        ("She has 12 + 6 = 18. The answer is 18.", "18", 1.0),
        ("The final answer is: 18 apples", "18", 1.0),  # a unit after the number
        ("Answer: $1,234.50 in total", "1234.5", 1.0),  # a currency sign, thousands commas, trailing zero
        ("It costs 1,234 dollars", "1234", 1.0),  # the last number, commas as thousands
        ("5 - 12 = -7", "-7", 1.0),  # a negative
        ("The temperature fell to −7 degrees", "-7", 1.0),  # a unicode minus
        ("2.50", "2.5", 1.0),  # decimals compared as numbers
        ("3, 4", "34", 0.0),  # a comma that is not a thousands separator: two numbers, the last is 4
        ("I am not sure how to solve this.", "18", 0.0),  # no number at all: wrong, not unscored
        ("First 3 x 4 = 12, then 12 + 5 = 17", "3 × 4 = 12. 12 + 5 = 17. The answer is 17.", 1.0),  # a worked reference
        ("#### 42", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", 0.0),  # GSM8K's reference format
        ("#### 72", "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", 1.0),
    ],
)
def test_exact_match_by_hand(completion, reference, expected):
    assert exact_match(["q"], [completion], answer=[reference]) == [expected]


def test_exact_match_cannot_score_a_row_without_an_answer_and_final_answer_reads_the_markers():
    assert exact_match(["q", "q"], ["18", "18"], answer=[None, ""]) == [None, None]
    assert exact_match(["q"], ["18"]) == [None]  # no `answer` column at all
    assert final_answer("so the answer is 4. Then 5") == "4" and final_answer("no digits") is None
    assert final_answer("#### forty-two") == "forty-two"  # a non-numeric final answer, compared as text
    assert exact_match(["q"], ["#### Forty-two."], answer=["forty-two"]) == [1.0]


def test_format_rewards_a_worked_step():
    assert format(["q"] * 3, ["12 + 6 = 18, so 18", "It is 18.", "3 x 4 = 12"]) == [1.0, 0.0, 1.0]
    assert format(["q"], ["yes"], pattern=r"^yes$") == [1.0]


def word_count(prompts, completions, **columns):  # a user's own reward function, named by `_target_` below
    return [float(len(c.split())) for c in completions]


def sometimes_none(prompts, completions, **columns):
    return [None if c.startswith("?") else 1.0 for c in completions]


def test_a_weighted_sum_of_functions_given_as_config_nodes_with_their_keywords():
    judge = FunctionJudge(
        [
            {"_target_": "dpo_lightning.judges.functions.exact_match"},
            {"_target_": "dpo_lightning.judges.functions.format", "pattern": "="},
            {"_target_": "test_functions.word_count"},
        ],
        weights=[1.0, 0.5, 0.01],
    )
    assert judge.name == "exact_match + 0.5 × format(pattern='=') + 0.01 × word_count"
    scores = judge.score(["q", "q"], ["6 + 12 = 18", "17"], columns={"answer": ["18", "18"]})
    torch.testing.assert_close(scores, torch.tensor([1.0 + 0.5 + 0.05, 0.0 + 0.0 + 0.01], dtype=torch.float64))


def test_completions_no_function_can_score_are_nan_and_counted_and_tie():
    judge = FunctionJudge([sometimes_none, exact_match])
    scores = judge.score(["q"] * 3, ["?", "18", "?"], columns={"answer": ["18", "18", None]})
    assert scores[0] == 0.0  # exact_match scored it (wrong), sometimes_none could not
    assert scores[1] == 2.0 and math.isnan(scores[2])  # neither could score the third
    assert judge.unscored == {"sometimes_none": 2, "exact_match": 1}
    comparison = judge.compare(["q"] * 2, ["18", "?"], ["17", "18"], columns={"answer": ["18", None]})
    assert comparison.outcomes.tolist() == [1.0, 0.5]  # the unscored second pair is a tie


def test_judge_function_builds_from_its_config_option():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=["run_dir=unused", "judge=function"]).judge
    judge = instantiate(cfg)(device="cpu", batch_size=8)  # as evaluate.py and the online loop build a judge
    assert isinstance(judge, FunctionJudge) and judge.name == "exact_match" and judge.kind == "reward functions"
    outcomes = judge.compare(["q"], ["#### 3"], ["#### 4"], columns={"answer": ["3"]}).outcomes
    assert outcomes.tolist() == [1.0]


@pytest.mark.parametrize(
    "returned, message",
    [
        ([1.0], "returned 1 rewards for 2 completions"),
        ([1.0, float("nan")], "returned nan for completion 1"),
        ([1.0, "good"], "returned 'good' (str) for completion 1"),
        ("good", "returned str, not one reward per completion"),
    ],
)
def test_a_bad_function_is_a_clear_error_naming_it(returned, message):
    def bad_reward(prompts, completions, **columns):
        return returned

    with pytest.raises(ValueError, match="reward function bad_reward " + re.escape(message)):
        FunctionJudge([bad_reward]).score(["q", "q"], ["a", "b"])
    with pytest.raises(ValueError, match="judge.weights: 2 weights for 1 functions"):
        FunctionJudge([bad_reward], weights=[1, 2])
