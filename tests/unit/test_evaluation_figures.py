"""The evaluation's collapse, diversity and displacement figures against values computed by hand, the LLM judge's
order-swap and tie rule, and the warnings a collapsed set of answers trips."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from dpo_lightning.core.losses import PairLogps
from dpo_lightning.core.statistics import wilson
from dpo_lightning.evaluation.diversity import distinct_n, diversity, repetition, top_opening, top_phrase, words
from dpo_lightning.evaluation.result import EvaluationResult
from dpo_lightning.evaluation.rows import Thresholds
from dpo_lightning.evaluation.scoring import likelihood_displacement
from dpo_lightning.evaluation.verdicts import judge_accuracy, win_rate
from dpo_lightning.judges.base import Comparison, outcomes_from_scores
from dpo_lightning.judges.llm import order_swapped_outcomes

ANSWERS = ["I can't help with that.", "I can't help you, sorry.", "Low. It's a myth."]


def test_words_openings_and_distinct_n_by_hand():
    assert words("I’m UNSURE, of it's context!") == ["i'm", "unsure", "of", "it's", "context"]
    assert top_opening(ANSWERS) == ("i can't help", 2)
    tokenized = [words(a) for a in ANSWERS]
    # unigrams: 5 + 5 + 4 = 14, of which i, can't, help appear twice -> 11 distinct
    assert distinct_n(tokenized, 1) == pytest.approx(11 / 14)
    # bigrams: 4 + 4 + 3 = 11; (i, can't) and (can't, help) twice -> 9 distinct
    assert distinct_n(tokenized, 2) == pytest.approx(9 / 11)
    assert math.isnan(distinct_n([["one"]], 2))


def test_the_most_shared_phrase_counts_each_answer_once():
    tokenized = [words(a) for a in ANSWERS + ["Sorry, I can't help. I can't help."]]
    # "i can't help" is in answers 1, 2 and 4 (twice in 4, counted once); "can't help with" only in 1
    assert top_phrase(tokenized) == ("i can't help", 3)
    assert top_phrase([["too", "short"]]) == ("", 0)
    d = diversity(ANSWERS + ["Sorry, I can't help. I can't help."], resamples=200)
    w = wilson(3, 4)
    assert d.top_phrase == "i can't help"
    assert (d.phrase_share.value, d.phrase_share.low, d.phrase_share.high) == pytest.approx((3 / 4, w.low, w.high))


def test_a_stock_phrase_inside_varied_answers_trips_the_phrase_warning_only():
    stock = [f"{topic}? If you're unsure, ask someone." for topic in ("Sleep", "Mars", "Taxes", "Tattoos", "Strep")]
    plain = [
        "The wall is hard to see from orbit.",
        "Call emergency services right away.",
        "Tell your boss the truth today.",
        "Mars has two small moons.",
        "Rest, fluids, and see a doctor if it gets worse.",
    ]
    result = collapsed_result(stock + plain, plain * 2)
    text = " ".join(result.warnings())
    assert 'Stock phrase: 5 of 10 DPO answers (50%) contain "if you\'re unsure" (base: 20%' in text
    assert "open with" not in text  # every answer opens differently
    row = next(r for r in result.rows() if r.key == "phrase_share")
    assert row.dpo["value"] == pytest.approx(0.5) and row.base["value"] == pytest.approx(0.2)


def test_repetition_within_an_answer_by_hand():
    # 3-grams of "step one step one step one": (s,o,s) (o,s,o) (s,o,s) (o,s,o): 2 of 4 repeat an earlier one
    assert repetition(words("step one step one step one")) == pytest.approx(0.5)
    assert repetition(words("a b c d e")) == 0.0
    assert repetition(words("too short")) == 0.0


def test_diversity_figures_and_their_intervals():
    d = diversity(ANSWERS, resamples=500)
    assert d.top_opening == "i can't help" and d.answers == 3
    w = wilson(2, 3)
    assert (d.opening_share.value, d.opening_share.low, d.opening_share.high) == pytest.approx((2 / 3, w.low, w.high))
    assert d.distinct_2.value == pytest.approx(9 / 11) and d.distinct_2.low <= d.distinct_2.value <= d.distinct_2.high
    assert d.length_words.value == pytest.approx((5 + 5 + 4) / 3)
    assert d.repetition.value == 0.0


def test_likelihood_displacement_by_hand():
    # per-token log-probs: base chosen -2, -4 (sums -4 over 2 tokens, -12 over 3); DPO chosen -3, -5
    base = PairLogps(
        torch.tensor([-4.0, -12.0]), torch.tensor([-6.0, -2.0]), torch.tensor([2, 3]), torch.tensor([3, 1])
    )
    dpo = PairLogps(torch.tensor([-6.0, -15.0]), torch.tensor([-9.0, -4.0]), torch.tensor([2, 3]), torch.tensor([3, 1]))
    got = likelihood_displacement(base, dpo, resamples=200, confidence=0.95, seed=0)
    assert got["chosen"]["base"]["value"] == pytest.approx(-3.0)
    assert got["chosen"]["dpo"]["value"] == pytest.approx(-4.0)
    assert got["chosen"]["change"]["value"] == pytest.approx(-1.0)  # both pairs fell by exactly 1: a zero-width CI
    assert got["chosen"]["change"]["ci_high"] == pytest.approx(-1.0)
    assert got["rejected"]["change"]["value"] == pytest.approx(((-3 + 2) + (-4 + 2)) / 2)


def test_llm_judge_order_swap_and_tie_rule():
    as_given = torch.tensor([True, False, True, False])
    swapped = torch.tensor([True, False, False, True])  # the first answer's win in the swapped order
    c = order_swapped_outcomes(as_given, swapped)
    assert c.outcomes.tolist() == [1.0, 0.0, 0.5, 0.5]  # both orders agree -> win / loss; disagree -> tie
    assert c.consistent.tolist() == [True, True, False, False]
    w = win_rate(c)
    assert (w["wins"], w["ties"], w["losses"]) == (1, 2, 1) and w["win_rate"] == pytest.approx(0.5)
    assert w["order_consistency"]["value"] == pytest.approx(0.5)


def test_score_outcomes_and_judge_accuracy_count_ties_half():
    o = outcomes_from_scores(torch.tensor([1.0, 0.0, -1.0, 0.05]), torch.zeros(4), tie_tolerance=0.1)
    assert o.tolist() == [1.0, 0.5, 0.0, 0.5]

    class Fixed:
        def compare(self, prompts, first, second):
            return Comparison(torch.tensor([1.0, 1.0, 0.5, 0.0]))

    acc = judge_accuracy(Fixed(), ["p"] * 4, ["c"] * 4, ["r"] * 4)
    assert acc["value"] == pytest.approx(2.5 / 4) and acc["pairs"] == 4


def test_llm_judge_on_the_tiny_model(tiny_model_dir):
    """The mechanics on a real (tiny, random) chat model: the batched, left-padded preference equals the one-prompt
    computation from the model's logits, swapping the answers swaps the verdicts, and a tie is where orders disagree."""
    from dpo_lightning.judges.llm import LLMJudge

    judge = LLMJudge(str(tiny_model_dir), batch_size=3, max_answer_tokens=64)
    prompts = ["Is the Pacific the largest ocean?", "How do I pick a lock?", "Tell me a joke.", "Say hi."]
    first = ["Yes, by far.", "I can't help with that.", "Why did the chicken cross the road?", "Hi!"]
    second = ["No.", "Use a tension wrench and a pick on the pins, one by one.", "No.", "Hello there, friend."]
    batched = judge.prefers_first(prompts, first, second)
    for i in range(len(prompts)):
        ids = torch.tensor([judge.render(prompts[i], first[i], second[i])])
        logits = judge.model(input_ids=ids).logits[0, -1].double()
        letter = torch.stack([logits[ids_].logsumexp(-1) for ids_ in judge.letters])
        torch.testing.assert_close(batched[i], letter.softmax(-1)[0], rtol=0, atol=1e-5)
    forward, backward = judge.compare(prompts, first, second), judge.compare(prompts, second, first)
    torch.testing.assert_close(forward.outcomes, 1 - backward.outcomes)
    assert ((forward.outcomes == 0.5) == ~forward.consistent).all()


def collapsed_result(dpo_answers: list[str], base_answers: list[str], **judge) -> EvaluationResult:
    ref = ["Low. It's a myth.", "Call 911 now; this could be a stroke.", "Tell her the truth kindly."] * 4
    zero = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}
    shift = {"base": zero, "dpo": zero, "change": {"value": -0.5, "ci_low": -0.7, "ci_high": -0.3}}
    result = EvaluationResult(
        run_dir="r",
        data="d",
        pairs=12,
        beta=0.1,
        confidence=0.95,
        intervals={"proportions": "Wilson", "means": "BCa"},
        base={"preference_accuracy": 0.5, "preference_accuracy_normalized": 0.5},
        dpo={"preference_accuracy": 0.5, "preference_accuracy_normalized": 0.5},
        implicit_reward={"accuracy": zero},
        displacement={"chosen": shift, "rejected": shift},
        thresholds=Thresholds(),
    )
    result.diversity = {
        name: diversity(texts, resamples=200).as_dict()
        for name, texts in (("base", base_answers), ("dpo", dpo_answers), ("reference", ref))
    }
    return result


VARIED = [  # six answers on six topics: no figure of diversity or collapse trips on them
    "The wall is hard to see from orbit.",
    "Call emergency services right away.",
    "Tell your boss the truth today.",
    "Mars has two small moons.",
    "Rest, fluids, and see a doctor if it gets worse.",
    "A Roth IRA is taxed now, not later.",
]


def test_a_collapsed_set_of_answers_trips_the_warnings():
    boiler = "I'm unsure of the context. I can't provide that. I can't provide that. I can't provide that."
    varied = VARIED * 2
    warnings = collapsed_result([boiler] * 10 + varied[:2], varied).warnings()
    text = " ".join(warnings)
    assert 'Collapse: 10 of 12 DPO answers (83%) open with "i\'m unsure of"' in text
    assert "Less diverse than base" in text and "Loops:" in text
    assert "Likelihood displacement" in text  # the chosen answers' log-prob fell (CI below 0)
    healthy = collapsed_result(varied, varied)
    healthy.displacement["chosen"]["change"] = {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2}
    assert healthy.warnings() == []


def test_empty_and_looping_answers_are_counted_and_warned_of():
    varied = VARIED
    broken = ["", "\u2695" * 40, "", "no no no no no no no no no no no no"]
    result = collapsed_result(broken + varied[:2], varied)
    row = next(r for r in result.rows() if r.key == "degenerate")
    assert row.base["value"] == 0.0
    torch.testing.assert_close(row.dpo["value"], 4 / 6)  # four of the six DPO answers are broken
    assert "Broken answers: 67% of DPO's answers" in " ".join(result.warnings())


def test_a_self_trained_or_weak_judge_is_flagged():
    result = collapsed_result(["a b c"] * 12, ["a b c"] * 12)
    w = {"wins": 6, "ties": 0, "losses": 6, "win_rate": 0.5, "ci_low": 0.25, "ci_high": 0.75}
    result.judge = {
        "model": "j",
        "kind": "reward model",
        "self_trained": True,
        "greedy": w,
        "sampled": w,
        "reference": {"dpo": w, "base": w},
        "accuracy_on_pairs": {"value": 0.6, "ci_low": 0.4, "ci_high": 0.8, "pairs": 12},
    }
    text = " ".join(result.warnings())
    assert "grades its own homework" in text and "ranks only 60%" in text and "reference answers" in text
    summary = result.to_dict()["summary"]
    assert [r["key"] for r in summary if r["warning"]][-2:] == ["judge_win_rate_reference", "judge_accuracy"]


def test_judge_auto_learns_from_disjoint_pairs_where_there_are_such():
    from dpo_lightning.tasks.judge_training import judge_data_path

    builtin = OmegaConf.create({"data": {"path": "builtin:train"}})
    assert judge_data_path(builtin, "auto") == ("builtin:judge", False)
    hh = OmegaConf.create({"data": {"path": "/data/hh/train.jsonl.gz"}})
    assert judge_data_path(hh, "auto") == ("/data/hh/train.jsonl.gz", True)  # self-trained: the report says so
    assert judge_data_path(hh, "/data/hh/other.jsonl") == ("/data/hh/other.jsonl", False)


def test_judge_auto_starts_from_the_pretrained_model_not_the_runs_sft_model():
    """A run that started from an SFT model (the main job) hands its judge the model before SFT: the SFT model has
    learned the training pairs' chosen answers. The judge is the same, and cached under the same key, either way."""
    from conftest import compose
    from dpo_lightning.tasks.judge_training import judge_config, judge_key

    sft = compose("experiment=main", "model.init_from=/runs/sft")
    judged = judge_config(sft, data_path="builtin:judge")
    assert judged.model.init_from is None and judged.model.name_or_path == "embedded:smollm2-135m-instruct"
    assert judge_key(judged) == judge_key(judge_config(compose("experiment=main"), data_path="builtin:judge"))


def test_judge_negatives_are_derived_from_the_pairs_themselves():
    from dpo_lightning.data.formats import PreferencePair
    from dpo_lightning.tasks.judge_training import with_negatives

    pairs = [
        PreferencePair("p0", "Own it. Say sorry.", "Lie."),
        PreferencePair("p1", "Mars has two moons! Phobos and Deimos.", "None."),
        PreferencePair("p2", "no full stop here at all", "x"),
        PreferencePair("p3", "Call 911 now. Then wait.", "Wait."),
    ]
    rows = with_negatives(pairs, ["off_topic", "loop"])
    assert [r["kind"] for r in rows] == ["given"] * 4 + ["off_topic"] * 4 + ["loop"] * 4
    given, off_topic, loop = rows[:4], rows[4:8], rows[8:]
    assert all(r["chosen"] == p.chosen and r["prompt"] == p.prompt for r, p in zip(off_topic + loop, pairs * 2))
    # off-topic: the chosen answer of the pair half the set away (p0 <- p2, p1 <- p3, p2 <- p0, p3 <- p1)
    assert [r["rejected"] for r in off_topic] == [pairs[2].chosen, pairs[3].chosen, pairs[0].chosen, pairs[1].chosen]
    assert loop[0]["rejected"] == "Own it. Own it. Own it. Own it."
    assert loop[1]["rejected"] == " ".join(["Mars has two moons!"] * 4)
    assert loop[2]["rejected"] == " ".join(["no full stop here at all"] * 4)  # no sentence end: its first 8 words
    assert [r["rejected"] for r in given] == [p.rejected for p in pairs]
    assert with_negatives(pairs, []) == given
    with pytest.raises(ValueError, match="unknown kind"):
        with_negatives(pairs, ["shouting"])
    chat = with_negatives([pairs[0].as_chat(), pairs[1].as_chat()], ["loop", "off_topic"])
    assert chat[2]["rejected"] == [{"role": "assistant", "content": "Own it. Own it. Own it. Own it."}]
    assert chat[4]["rejected"] == [{"role": "assistant", "content": pairs[1].chosen}]  # off-topic, as a chat turn
    assert chat[2]["prompt"] == [{"role": "user", "content": "p0"}]


def test_blind_reading_sheet_hides_the_sides_and_scores_against_the_key(tmp_path):
    import json
    import re

    from dpo_lightning.evaluation.blind import score, write_sheet

    # the evaluation's judge: DPO better on q0-q4, worse on q5 and q6, a tie on q7
    judged = [1.0] * 5 + [0.0, 0.0, 0.5]
    rows = [
        {"prompt": f"q{i}", "dpo_greedy": f"good {i}", "base_greedy": f"bad {i}", "reference": "r",
         "verdict_dpo_over_base_greedy": judged[i]}
        for i in range(8)
    ]  # fmt: skip
    (tmp_path / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sheet = write_sheet(tmp_path, seed=3).read_text()
    a_sides = re.findall(r"\nA: (good|bad) ", sheet)
    assert len(a_sides) == 8 and 0 < a_sides.count("good") < 8  # shuffled, not always the same side
    assert "reference answer" not in sheet
    # a reader who prefers "good" everywhere but calls the last two a tie: 6 wins, 2 ties, 0 losses
    verdicts = ["A" if side == "good" else "B" for side in a_sides[:6]] + ["T", "T"]
    (tmp_path / "v.txt").write_text(" ".join(verdicts))
    result = score(tmp_path, tmp_path / "v.txt")
    assert (result["wins"], result["ties"], result["losses"]) == (6, 2, 0)
    assert result["win_rate"] == pytest.approx(7 / 8)
    assert result["ci_low"] == pytest.approx(wilson(7, 8).low)
    # both decided q0-q5 (the reader tied q6 and q7): the judge agrees on q0-q4, not on q5
    agreement = result["judge_agreement"]
    assert (agreement["agree"], agreement["decided"]) == (5, 6) and agreement["rate"] == pytest.approx(5 / 6)
    assert agreement["ci_low"] == pytest.approx(wilson(5, 6).low)
    flipped = ["B" if v == "A" else "A" for v in verdicts[:6]] + ["T", "T"]
    (tmp_path / "v.txt").write_text("\n".join(flipped))
    assert score(tmp_path, tmp_path / "v.txt")["losses"] == 6
    (tmp_path / "v.txt").write_text("A B")
    with pytest.raises(ValueError, match="expected 8 verdicts"):
        score(tmp_path, tmp_path / "v.txt")
    assert "reference answer: r" in write_sheet(tmp_path, reference=True).read_text()


def test_a_blind_sheet_against_another_evaluation_pairs_their_answers(tmp_path):
    import json
    import re

    from dpo_lightning.evaluation.blind import score, write_sheet

    for name, word in (("online", "on"), ("offline", "off")):
        rows = [{"prompt": f"q{i}", "dpo_greedy": f"{word} {i}"} for i in range(6)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    sheet = write_sheet(tmp_path / "online", seed=1, against=tmp_path / "offline").read_text()
    pairs = re.findall(r"\nA: (on|off) (\d)\n\nB: (on|off) (\d)\n", sheet)
    assert len(pairs) == 6 and all(a != b and i == j for a, i, b, j in pairs)  # prompt by prompt, shuffled sides
    (tmp_path / "v.txt").write_text(" ".join("A" if a == "on" else "B" for a, *_ in pairs))
    result = score(tmp_path / "online", tmp_path / "v.txt")
    assert result["wins"] == 6 and result["second"] == f"{tmp_path / 'offline'}:dpo_greedy"
    assert "judge_agreement" not in result  # no judge's verdicts recorded for these two
    # a head to head of the same two (online.compare_to writes it beside the evaluation): the judge prefers online on
    # the first four prompts only; the reader preferred it on all six
    h2h = {"second": str(tmp_path / "offline"), "field": "dpo_greedy", "outcomes": [1, 1, 1, 1, 0, 0]}
    (tmp_path / "online" / "head_to_head.json").write_text(json.dumps(h2h))
    assert score(tmp_path / "online", tmp_path / "v.txt")["judge_agreement"]["agree"] == 4
    h2h["field"] = "dpo_sampled"  # a head to head of other answers says nothing of these
    (tmp_path / "online" / "head_to_head.json").write_text(json.dumps(h2h))
    assert "judge_agreement" not in score(tmp_path / "online", tmp_path / "v.txt")


def test_a_blind_sheet_of_the_loops_pairs_scores_the_judges_labels(tmp_path, capsys):
    import json
    import re

    from dpo_lightning.data.text import as_text
    from dpo_lightning.evaluation.blind import main, score, write_pairs_sheet

    # an online run's two rounds: chat pairs (as the loop writes them) and plain-text ones; chosen "c<r>.<i>"
    for r in range(2):
        (tmp_path / f"round_{r}").mkdir()
        rows = [{"prompt": [{"role": "user", "content": f"q{r}.{i}"}] if r == 0 else f"q{r}.{i}",
                 "chosen": [{"role": "assistant", "content": f"c{r}.{i}"}] if r == 0 else f"c{r}.{i}",
                 "rejected": [{"role": "assistant", "content": f"x{r}.{i}"}] if r == 0 else f"x{r}.{i}",
                 "chosen_score": 1.0, "rejected_score": 0.0} for i in range(4)]  # fmt: skip
        (tmp_path / f"round_{r}" / "pairs.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    sheet = write_pairs_sheet(tmp_path, n=6, seed=2).read_text()
    drawn = re.findall(r"\nQ: q(\d\.\d)\n\nA: ([cx])(\d\.\d)\n\nB: ([cx])(\d\.\d)\n", sheet)
    assert len(drawn) == 6 and len({q for q, *_ in drawn}) == 6  # six distinct pairs of both rounds' eight
    assert all(q == i == j and {a, b} == {"c", "x"} for q, a, i, b, j in drawn)  # each pair's own two answers
    assert 0 < sum(a == "c" for _, a, *_ in drawn) < 6  # the chosen answer on both sides
    assert write_pairs_sheet(tmp_path, n=6, seed=2).read_text() == sheet  # the seed fixes the sheet
    # the reader prefers the chosen answer on the first three, the rejected on the next two, neither on the last
    verdicts = [("A" if a == "c" else "B") for _, a, *_ in drawn[:3]]
    verdicts += [("B" if a == "c" else "A") for _, a, *_ in drawn[3:5]]
    (tmp_path / "v.txt").write_text(" ".join(verdicts + ["T"]))
    result = score(tmp_path, tmp_path / "v.txt")
    assert (result["first"], result["wins"], result["ties"], result["losses"]) == ("chosen", 3, 1, 2)
    agreement = result["judge_agreement"]  # the loop's judge chose every chosen answer
    assert (agreement["agree"], agreement["decided"]) == (3, 5)
    assert agreement["ci_low"] == pytest.approx(wilson(3, 5).low)

    class SecondJudge:  # prefers the chosen answer of round 1's pairs only; ties "q0.0"
        name = "second"

        def compare(self, prompts, first, second):
            prompts = [as_text(p) for p in prompts]  # round 0's are chat messages, as written
            outcomes = [0.5 if p == "q0.0" else float(p.startswith("q1")) for p in prompts]
            assert all(f[1:] == p[1:] == s[1:] for p, f, s in zip(prompts, first, second))  # the drawn pairs as text
            return Comparison(torch.tensor(outcomes))

    second = score(tmp_path, tmp_path / "v.txt", judge=SecondJudge())["second_judge"]
    expected = [0.5 if q == "0.0" else float(q.startswith("1")) for q, *_ in drawn]
    assert second["same_as_loop"] == expected.count(1.0) and second["pairs"] == 6
    assert second["ties"] == expected.count(0.5)
    reader = [True] * 3 + [False] * 2  # the reader sided with the chosen answer on the first three
    decided = [(r, o == 1.0) for r, o in zip(reader, expected) if o != 0.5]
    assert second["reader"]["decided"] == len(decided) and second["reader"]["agree"] == sum(r == j for r, j in decided)
    # a conversation's turns are named by their roles (a single user turn is shown as its text)
    from dpo_lightning.data.text import prompt_text as dialogue

    turns = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "q"},
    ]
    assert dialogue(turns) == "user: hi\nassistant: hello\nuser: q" and dialogue(turns[:1]) == "hi" == dialogue("hi")
    # one round's folder, or its file, serves as well; a folder without pairs is named in the error
    assert "Q: q1." in write_pairs_sheet(tmp_path / "round_1" / "pairs.jsonl", n=2).read_text()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: no pairs.jsonl"):
        write_pairs_sheet(tmp_path / "empty", n=2)
    main([str(tmp_path), "--pairs", "6", "--seed", "2"])
    main([str(tmp_path), "--score", str(tmp_path / "v.txt")])
    assert "the reader prefers the loop's judge's chosen answer on 3 of the 5 pairs decided" in capsys.readouterr().out
