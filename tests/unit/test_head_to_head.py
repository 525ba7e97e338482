"""Two evaluations' answers judged head to head: pairing by prompt, hand-computed wins, and bad input named."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dpo_lightning.evaluation.head_to_head import head_to_head, length_controlled, longer_wins, paired_answers
from dpo_lightning.judges.base import Comparison, outcomes_from_scores


def write_eval(folder, rows):
    folder.mkdir(parents=True)
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


class LengthJudge:  # scores an answer by its length: the longer answer wins, equal lengths tie
    name = "length"

    def compare(self, prompts, first, second):
        self.prompts = prompts
        a = torch.tensor([float(len(x)) for x in first], dtype=torch.float64)
        b = torch.tensor([float(len(x)) for x in second], dtype=torch.float64)
        return Comparison(outcomes_from_scores(a, b), a, b)


def test_first_against_second_prompt_by_prompt(tmp_path):
    turns = [{"role": "user", "content": "q2"}]
    a = write_eval(tmp_path / "a", [
        {"prompt": "q1", "dpo_greedy": "long answer"},
        {"prompt": "q2", "prompt_turns": turns, "dpo_greedy": "ab"},
        {"prompt": "q3", "dpo_greedy": "same"},
        {"prompt": "q4", "dpo_greedy": "x"},
    ])  # fmt: skip
    b = write_eval(tmp_path / "b", [
        {"prompt": "q1", "dpo_greedy": "short"},
        {"prompt": "q2", "dpo_greedy": "abc"},
        {"prompt": "q3", "dpo_greedy": "samE"},
        {"prompt": "q4", "dpo_greedy": "yy"},
    ])  # fmt: skip
    judge = LengthJudge()
    r = head_to_head(a, b, judge, resamples=200)
    # q1 won, q2 lost, q3 tied, q4 lost: (1 + 0.5) / 4
    assert (r["wins"], r["ties"], r["losses"]) == (1, 1, 2) and r["win_rate"] == pytest.approx(0.375)
    assert r["outcomes"] == [1.0, 0.0, 0.5, 0.0]  # per prompt, for a blind reading to be checked against
    assert r["ci_low"] < 0.375 < r["ci_high"] and r["reward_first"]["value"] == pytest.approx((11 + 2 + 4 + 1) / 4)
    assert judge.prompts == ["q1", turns, "q3", "q4"]  # the chat turns the model saw, where they were recorded


def test_different_prompts_or_a_missing_field_are_named(tmp_path):
    a = write_eval(tmp_path / "a", [{"prompt": "q1", "dpo_greedy": "x"}, {"prompt": "q2", "dpo_greedy": "y"}])
    b = write_eval(tmp_path / "b", [{"prompt": "q1", "dpo_greedy": "x"}, {"prompt": "other", "dpo_greedy": "y"}])
    with pytest.raises(ValueError, match=r"b/generations.jsonl line 2: prompt 'other'"):
        paired_answers(a, b, "dpo_greedy")
    with pytest.raises(ValueError, match=r"a/generations.jsonl line 1: no field 'dpo_sampled'"):
        paired_answers(a, a, "dpo_sampled")
    c = write_eval(tmp_path / "c", [{"prompt": "q1", "dpo_greedy": "x"}])
    with pytest.raises(ValueError, match="has 2 prompts"):
        paired_answers(a, c, "dpo_greedy")
    with pytest.raises(FileNotFoundError, match="no generations"):
        paired_answers(tmp_path / "missing", a, "dpo_greedy")


def test_how_often_the_judge_picks_the_longer_answer():
    first = ["one two three", "one", "one two", "same length", "a b c d"]
    second = ["one", "one two three", "one two", "equal words", "a"]
    # picks: the longer (first, 3 words), the longer (second), a tie in words, a tie in words, the shorter (second)
    r = longer_wins(first, second, [1.0, 0.0, 1.0, 0.0, 0.0])
    assert (r["count"], r["of"]) == (2, 3) and r["rate"] == pytest.approx(2 / 3)
    assert r["mean_words_first"] == pytest.approx(12 / 5) and r["mean_words_second"] == pytest.approx(9 / 5)
    assert longer_wins(first, second, [0.5] * 5)["of"] == 0  # ties are not decisions


def test_the_win_rate_at_equal_length_by_hand():
    # 8 prompts where the first answer is 2 words longer (6 wins: 0.75), 2 where it is 2 words shorter (1 win: 0.5).
    # Two values of x = tanh(difference / sd): the fit is saturated, so sigmoid(intercept) = sigmoid of the mean of
    # the two groups' log-odds, (log 3 + 0) / 2, and slope = (log 3 - 0) / (2 tanh(2 / sd)), sd = 1.6.
    first, second = ["a b c"] * 8 + ["a"] * 2, ["a"] * 8 + ["a b c"] * 2
    outcomes = [1.0] * 6 + [0.0] * 2 + [1.0, 0.0]
    r = length_controlled(first, second, outcomes, resamples=500, ridge=1e-9)
    assert r["value"] == pytest.approx(math.sqrt(3) / (1 + math.sqrt(3)), abs=1e-4)  # 0.634, the plain rate 0.7
    assert r["slope"] == pytest.approx(math.log(3) / (2 * math.tanh(2 / 1.6)), abs=1e-3)
    assert r["ci_low"] < r["value"] < r["ci_high"]
    # the same win rate whatever the length: no length effect, the plain rate
    even = length_controlled(first, second, [1.0] * 4 + [0.0] * 4 + [1.0, 0.0], resamples=500, ridge=1e-9)
    assert even["value"] == pytest.approx(0.5, abs=1e-6) and even["slope"] == pytest.approx(0.0, abs=1e-6)
    # the default prior shrinks the fit towards even: between the unpenalised 0.634 and 0.5
    assert 0.5 < length_controlled(first, second, outcomes, resamples=500)["value"] < r["value"]
    # every longer answer wins, every shorter one loses (separation): without the prior the fit runs off to infinity
    split = length_controlled(first, second, [1.0] * 8 + [0.0] * 2, resamples=500)
    assert 0.5 < split["value"] < 0.8 and 1 < split["slope"] < 10 and 0 < split["ci_low"] <= split["ci_high"] < 1
    same = length_controlled(["a b"] * 4, ["c d"] * 4, [1.0, 1.0, 0.5, 0.0])  # no length difference at all
    assert same["value"] == pytest.approx(2.5 / 4) and same["slope"] == 0.0
