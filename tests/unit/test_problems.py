"""Problems with exact answers: the built-in generator (seeded, its held-out split disjoint in wording), the problem
format (GSM8K's and {prompt, answer} rows, a worked answer against a slip, bad rows named), accuracy, pass@K and
majority@K by hand, and McNemar's exact test on fixed tables."""

from __future__ import annotations

import json

import pytest
from hydra.utils import instantiate
from scipy import stats

from conftest import compose
from dpo_lightning.core.statistics import mcnemar
from dpo_lightning.data import ProblemFormat
from dpo_lightning.data.answers import worked_answer, wrong_answer
from dpo_lightning.data.arithmetic import PHRASINGS, arithmetic_problems, phrasings
from dpo_lightning.data.readers import BadRows, DataError, iter_rows
from dpo_lightning.evaluation.accuracy import (
    ModelAccuracy,
    accuracy_by_kind,
    compare_accuracy,
    judge_answers,
    main,
    majority_answer,
    operations,
)
from dpo_lightning.judges.functions import exact_match


def test_the_generator_is_seeded_and_its_held_out_split_shares_no_wording():
    train, again = list(arithmetic_problems("train", 300)), list(arithmetic_problems("train", 300))
    test = list(arithmetic_problems("test", 300))
    assert train == again and train != list(arithmetic_problems("train", 300, seed=1))
    assert len({r["question"] for r in train}) == 300  # no problem twice in a split
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert not {r["template"] for r in train} & {r["template"] for r in test}  # no phrasing in both splits
    for operation in PHRASINGS:  # every operation is in both, each split its own phrasings of it
        assert set(phrasings(operation, "train")).isdisjoint(phrasings(operation, "test"))
        assert phrasings(operation, "train") and phrasings(operation, "test")
    assert {r["steps"] for r in test} == {1, 2} and {r["operation"].split(",")[0] for r in test} == {
        "add",
        "subtract",
        "multiply",
        "divide",
    }
    for row in train + test:  # every answer is the arithmetic of its worked steps, whole and non-negative
        result = int(row["answer"].rsplit("The answer is ", 1)[1].rstrip("."))
        steps = [s for s in row["answer"].split(". ") if "=" in s]
        for step in steps:
            left, right = step.split(" = ")
            a, op, b = left.split(" ")
            value = {"+": int(a) + int(b), "-": int(a) - int(b), "×": int(a) * int(b), "÷": int(a) / int(b)}[op]
            assert value == int(right) >= 0
        assert int(steps[-1].split(" = ")[1]) == result


def test_builtin_arithmetic_reads_as_a_data_option_with_its_answers():
    from dpo_lightning.models import build_tiny_llama

    tokenizer = build_tiny_llama().tokenizer
    data = instantiate(
        compose("data=arithmetic", "data.max_train_pairs=20").data, tokenizer=tokenizer, report_path=None
    )
    data.setup()
    assert (len(data.train_pairs), len(data.val_pairs)) == (20, 300)
    pair = data.val_pairs[0]
    assert pair.where == "builtin:arithmetic[test]:row 0" and pair.columns["template"].split(".")[0] in PHRASINGS
    question = next(arithmetic_problems("test", 1))["question"]
    assert pair.prompt[0]["content"] == question + " Give the final answer as a number."  # chat turns
    chosen, rejected = pair.chosen[0]["content"], pair.rejected[0]["content"]
    assert exact_match(["q"], [chosen], answer=[pair.columns["answer"]]) == [1.0]
    assert exact_match(["q"], [rejected], answer=[pair.columns["answer"]]) == [0.0]


def test_gsm8k_rows_become_a_worked_answer_against_a_slip():
    work = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"
    row = {"question": "Natalia sold clips to 48 friends in April, and half as many in May. How many?", "answer": work}
    pair = ProblemFormat(prompt_field="question").parse(row, "gsm8k.jsonl:1")
    assert pair.chosen == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\nThe answer is 72."
    assert pair.rejected.startswith("Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = ")
    assert pair.rejected != pair.chosen and pair.rejected == wrong_answer(pair.chosen, row["question"])
    assert pair.columns == {"answer": row["answer"]} and pair.where == "gsm8k.jsonl:1"
    bare = ProblemFormat(suffix=" Answer with a number.").parse({"prompt": "2 + 2?", "answer": 4, "id": 7}, "p:1")
    assert (bare.prompt, bare.chosen, bare.columns) == (
        "2 + 2? Answer with a number.",
        "The answer is 4.",
        {"answer": 4, "id": 7},
    )
    assert worked_answer("18") == "The answer is 18." and wrong_answer("The answer is 1.", "k") != "The answer is 0."


def test_bad_problem_rows_name_the_file_line_and_field(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text(
        json.dumps({"prompt": "1 + 1?", "answer": "2"}) + "\n" + json.dumps({"prompt": "2 + 2?"}) + "\n"
        + json.dumps({"prompt": "3 + 3?", "answer": ["6"]}) + "\n" + json.dumps({"answer": "8"}) + "\n"
    )  # fmt: skip
    with pytest.raises(DataError, match=r"problems.jsonl:2: field 'answer': missing"):
        ProblemFormat(prompt_field="prompt").load(iter_rows(str(path)))
    bad = BadRows("skip")
    pairs = ProblemFormat(prompt_field="prompt").load(iter_rows(str(path)), bad)
    assert len(pairs) == 1 and bad.counts == {"missing_field": 2, "wrong_type": 1}
    assert "problems.jsonl:3: field 'answer': expected a non-empty text or number" in bad.examples["wrong_type"][0]


def test_accuracy_pass_and_majority_by_hand():
    answers = ["18", "5", "7"]
    greedy = ["#### 18", "#### 4", "no idea"]
    sampled = [["#### 18", "#### 17", "#### 18"], ["#### 4", "#### 5", "#### 4"], ["#### 6", "#### 6", "#### 7"]]
    judged = judge_answers(exact_match, ["q1", "q2", "q3"], greedy, sampled, answers)
    assert judged.greedy == [True, False, False]
    assert judged.sampled == [[True, False, True], [False, True, False], [False, False, True]]
    assert judged.majority == [True, False, False]  # majorities 18, 4, 6
    figures = judged.as_dict()
    assert figures["greedy"]["value"] == pytest.approx(1 / 3) and figures["pass_at_3"]["value"] == 1.0
    assert figures["majority_at_3"]["value"] == pytest.approx(1 / 3) and figures["sampled"]["value"] == pytest.approx(
        4 / 9
    )
    assert majority_answer(["12 apples", "#### 12", "13"]) == "12" and majority_answer(["none"]) is None
    base = ModelAccuracy([False, False, True, True], [], [])
    trained = ModelAccuracy([True, True, True, False], [], [])
    diff = compare_accuracy(base, trained)["greedy_difference"]
    assert (diff["dpo_only"], diff["base_only"], diff["value"]) == (2, 1, 0.25)
    assert diff["p_value"] == pytest.approx(1.0)  # 2 against 1: P(X <= 1) = 4/8, doubled


def test_accuracy_by_kind_of_problem_counts_each_arms_right_answers(tmp_path, capsys):
    assert operations("2 × 9 = 18. 18 - 15 = 3. The answer is 3.") == "×,-"
    assert operations("She has 48/2 = <<48/2=24>>24. In all 48+24 = <<48+24=72>>72.\n#### 72") == "÷,+"
    assert operations("6 x 4 = 24. The answer is 24.") == "×" and operations("#### -3") == "none"
    assert operations("8 − 3 = 5. The answer is 5 - 1 = 4.") == "-"  # the text after "The answer is" is not working
    assert operations("2 + 3 + 4 = 9. The answer is 9.") == "+,+"  # a chain: each operation counted
    assert operations("<<2*3*4=24>> <<(5+3)*2=16>> <<20*.01=.2>>\n#### 1") == "×,×,+,×,×"
    assert operations("It takes 3-4 hours, so 4 - 1 = 3. The answer is 3.") == "-"  # a range is not a subtraction
    problems = [("a", "3 + 4 = 7. The answer is 7."), ("b", "9 - 2 = 7. The answer is 7."),
                ("c", "2 × 3 = 6. 6 + 1 = 7. The answer is 7."), ("d", "5 + 1 = 6. The answer is 6.")]  # fmt: skip
    arms = {"one": [(True, True), (False, True), (False, False), (True, False)],  # (base right, trained right)
            "two": [(True, False), (False, False), (False, True), (True, True)]}  # fmt: skip
    for name, verdicts in arms.items():
        (tmp_path / name).mkdir()
        rows = [
            {"prompt": q, "answer": a, "base_right": b, "dpo_right": d} for (q, a), (b, d) in zip(problems, verdicts)
        ]
        (tmp_path / name / "accuracy.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    one, two = tmp_path / "one", tmp_path / "two"
    assert accuracy_by_kind([one, two]) == [
        {"kind": "+", "problems": 2, "base": 2, str(one): 1, str(two): 1},
        {"kind": "-", "problems": 1, "base": 0, str(one): 1, str(two): 0},
        {"kind": "×,+", "problems": 1, "base": 0, str(one): 0, str(two): 1},
    ]
    main(["--by-kind", str(one), str(two)])
    assert "| all | 4 | 2 | 2 | 2 |" in capsys.readouterr().out
    (tmp_path / "three").mkdir()
    (tmp_path / "three" / "accuracy.jsonl").write_text(
        json.dumps({**json.loads((one / "accuracy.jsonl").read_text().splitlines()[0]), "prompt": "z"}) + "\n"
    )
    with pytest.raises(ValueError, match="not the same held-out problems"):
        accuracy_by_kind([one, tmp_path / "three"])


@pytest.mark.parametrize("b, c, p", [(0, 0, 1.0), (10, 0, 2 / 1024), (0, 10, 2 / 1024), (12, 3, 2 * 576 / 32768)])
def test_mcnemar_exact_on_fixed_tables(b, c, p):
    # 12 against 3: P(X <= 3), X ~ Binomial(15, 1/2) = (1 + 15 + 105 + 455) / 2^15, doubled
    assert mcnemar(b, c) == pytest.approx(p)
    assert mcnemar(b, c) == pytest.approx(min(1.0, stats.binomtest(b, b + c).pvalue) if b + c else 1.0)
