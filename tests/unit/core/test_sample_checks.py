"""The checks of broken answers (core/sample_checks.py) that the training callback and the evaluation share: each
kind of broken answer caught on a handful of short samples, and no alarm on real answers (the built-in set's 800
hand-written ones, short replies, numbers, lists, another script)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_lightning.core.sample_checks import answer_problem, check_answers
from dpo_lightning.data import builtin_file
from dpo_lightning.data.text import as_text
from dpo_lightning.evaluation.diversity import diversity

GOOD = [
    "Yes.",
    "No, no. Not today.",
    "42",
    "1000000",
    "The answer is 1,000,000.",
    "Hello! How can I help you today?",
    "I'm not sure. If you paste the answer, I'll check it step by step and tell you plainly whether it was wrong.",
    "1. Rinse the cut with water.\n2. Press a clean cloth on it.\n3. Cover it with a bandage.",
    "Monday: rest. Tuesday: run 5 km. Wednesday: rest. Thursday: run 5 km. Friday: rest.",
    "Well... I... don't know...",
    "长城在太空中用肉眼是看不见的，这是一个常见的误解。",
    "def add(a, b):\n    return a + b",
    "I can't help with that. I can't help with hiding charges, but I can help you explain the overrun.",
]


# The embedded SmolLM2-135M-Instruct's greedy answers to the first 8 built-in validation prompts: seven ordinary (if
# not always good) answers, and one loop.
SMOLLM2 = json.loads((Path(__file__).parents[1] / "fixtures" / "smollm2_greedy.json").read_text())["answers"]
SMOLLM2_LOOP, SMOLLM2_GREEDY = SMOLLM2[1], SMOLLM2[:1] + SMOLLM2[2:]


def builtin_answers() -> list[str]:
    rows = [json.loads(line) for split in ("train", "val", "judge") for line in builtin_file(split).open()]
    return [as_text(row[key]) for row in rows for key in ("chosen", "rejected")]


@pytest.mark.parametrize("text", GOOD + SMOLLM2_GREEDY)
def test_ordinary_answers_are_not_degenerate(text):
    assert answer_problem(text) is None


def test_no_hand_written_answer_of_the_builtin_set_trips_a_check():
    answers = builtin_answers()
    assert len(answers) == 800
    assert [(a, answer_problem(a)) for a in answers if answer_problem(a) is not None] == []
    val = answers[400:500:2]  # the validation split's chosen answers, in order: the callback's prompts
    for start in range(0, len(val) - 3, 4):  # four answers to four prompts, as the callback sees them
        assert check_answers(val[start : start + 4]).problems == []


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("  \n\t", "empty"),
        ("🐁⚕⚕⚕⚕⚕", 'one character repeated: "⚕" is 5 of its 6 characters'),
        ("🐁⚕️⚕️⚕️⚕️⚕️", 'one character repeated: "⚕" is 5 of its 6 characters'),  # with emoji variation selectors
        ("!!!!!!!!", 'one character repeated: "!" is 8 of its 8 characters'),
        (" ".join(["deposits"] * 48), 'one word repeated: "deposits" is 48 of its 48 words'),
        # 12 words, 10 3-grams, 3 distinct: 7 of 10 repeat; 12 characters, the same
        ("I am sorry. " * 4, 'a loop: 70% of its 3-word phrases repeat an earlier one ("i am sorry" most)'),
        ("abcabcabcabc", 'a loop: 70% of its 3-character runs repeat an earlier one ("abc" most)'),
        # 32 words, 30 3-grams, 3 distinct ("i'm a human" once, then "a human a", "human a human")
        (SMOLLM2_LOOP, 'a loop: 90% of its 3-word phrases repeat an earlier one ("a human a" most)'),
    ],
)
def test_each_kind_of_broken_answer_is_named(text, says):
    assert answer_problem(text) == says


def test_a_loop_is_most_of_the_answer_not_one_repeat():
    sentence = "Take it to a pharmacist and ask which dose is safe for a child of that weight."
    # 16 words; said twice: 30 3-grams, 16 distinct (14 inside, 2 across), 14/30 = 0.47 repeat; three times: 30/46
    assert answer_problem(f"{sentence} {sentence}") is None
    assert answer_problem(f"{sentence} {sentence} {sentence}").startswith("a loop: 65% of its 3-word phrases")


def test_the_embedded_models_answers_to_four_prompts():
    check = check_answers(SMOLLM2_GREEDY[:1] + [SMOLLM2_LOOP] + SMOLLM2_GREEDY[1:3])
    assert check.degenerate == [1] and check.share == 0.25 and len(check.problems) == 1
    assert check.problems[0].startswith("answer 2 of 4 is a loop: 90% of its 3-word phrases")
    for start in range(0, 4):
        assert check_answers(SMOLLM2_GREEDY[start : start + 4]).problems == []


def test_the_issues_two_broken_runs_on_two_prompts():
    sft = check_answers(["", ""])  # the SFT stage on a 30-row file
    assert sft.degenerate == [0, 1] and sft.share == 1.0 and sft.problems == ["answers 1, 2 of 2 are empty"]
    dpo = check_answers(["🐁⚕⚕⚕⚕⚕⚕⚕⚕⚕⚕⚕⚕", "Paris is the capital of France."])
    assert dpo.degenerate == [0] and dpo.share == 0.5
    assert dpo.problems == ['answer 1 of 2 is one character repeated: "⚕" is 12 of its 13 characters: "🐁⚕⚕⚕⚕⚕⚕⚕⚕⚕⚕⚕⚕"']


def test_one_answer_to_every_prompt_and_one_opening():
    same = check_answers(["Sure thing, here you go."] * 3)
    assert same.share == 1.0 and same.problems == ['the same answer to all 3 prompts: "Sure thing, here you go."']
    looped = check_answers([" ".join(["deposits"] * 48)] * 4)
    assert looped.share == 1.0 and len(looped.problems) == 1
    assert looped.problems[0].startswith('the same answer to all 4 prompts, one word repeated: "deposits" is 48')
    opening = check_answers(["I can help with the dose.", "I can help you plan it.", "I can help: call 911."])
    assert opening.degenerate == [] and opening.share == 0.0
    assert opening.problems == ['all 3 answers open with "i can help"']
    # two answers sharing an opening, or one refusal to two harmful requests, is no collapse; nor is one answer
    assert check_answers(["I can help with the dose.", "I can help you plan it."]).problems == []
    assert check_answers(["I can't help with that."] * 2).problems == []
    assert check_answers(["Hello there."]).problems == [] and check_answers([]).share == 0.0


def test_the_evaluation_reports_the_same_checks():
    answers = ["", "Paris is the capital of France.", " ".join(["deposits"] * 10), "Low. It's a myth."]
    d = diversity(answers, resamples=200)
    assert d.degenerate.value == pytest.approx(0.5) and d.degenerate.low < 0.5 < d.degenerate.high
    assert d.problems == check_answers(answers).problems and len(d.problems) == 2
    assert d.as_dict()["degenerate"]["value"] == pytest.approx(0.5)
