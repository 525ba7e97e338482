"""The online loop's pair building on fixed scores (best against worst, ties and gaps), a pairwise judge's round
robin, and the round's pairs read back by `data=jsonl`."""

from __future__ import annotations

import json

import pytest
import torch

from dpo_lightning.core.records import RoundPair, read_pairs, write_pairs
from dpo_lightning.data import PreferenceFormat, preference_data, read_json_rows
from dpo_lightning.judges.base import Comparison
from dpo_lightning.tasks.online.pairs import PairRule, Sampling, _score, build_pairs
from dpo_lightning.tasks.online.samplers import chosen_backend

SAMPLES = [
    {"prompt": "q1", "answers": ["a", "b", "c", "d"]},
    {"prompt": "q2", "answers": ["x", "y", "z", "w"]},
    {"prompt": "q3", "answers": ["same", "same ", "other", "more"]},
    {"prompt": [{"role": "user", "content": "q4"}], "answers": ["p", "q", "r", "s"]},
]
SCORES = [
    [0.1, 0.9, -0.5, 0.3],  # best b, worst c
    [0.2, 0.2, 0.2, 0.2],  # all tie: no pair
    [1.0, 1.0, -1.0, -1.0],  # best: first of the tied best (same); worst: first of the tied worst (other)
    [0.0, 0.05, 0.0, 0.02],  # gap 0.05
]


def test_best_against_worst_with_ties_and_a_minimum_gap():
    pairs = build_pairs(SAMPLES, SCORES, PairRule(min_gap=0.0))
    assert [(p.chosen, p.rejected) for p in pairs[:2]] == [("b", "c"), ("same", "other")]
    assert pairs[0].chosen_score == 0.9 and pairs[0].rejected_score == -0.5
    chat = pairs[2]  # a chat prompt: the answers as assistant turns, as TRL's conversational format has them
    assert chat.prompt == [{"role": "user", "content": "q4"}]
    assert chat.chosen == [{"role": "assistant", "content": "q"}] and chat.rejected[0]["content"] == "p"
    # a gap of 0.05 is not more than 0.05: that prompt gives no pair
    assert [p.prompt for p in build_pairs(SAMPLES, SCORES, PairRule(min_gap=0.05))] == ["q1", "q3"]


def test_identical_best_and_worst_texts_give_no_pair():
    assert build_pairs([{"prompt": "q", "answers": ["x", "x "]}], [[1.0, 0.0]], PairRule()) == []


def test_a_pairwise_judge_scores_by_round_robin_wins():
    class FirstLonger:  # prefers the longer answer, ties equal lengths
        def compare(self, prompts, first, second):
            o = [1.0 if len(a) > len(b) else 0.0 if len(a) < len(b) else 0.5 for a, b in zip(first, second)]
            return Comparison(torch.tensor(o))

    (scores,) = _score(FirstLonger(), [{"prompt": "q", "answers": ["aaa", "a", "aa", "aa"]}])
    # aaa beats all 3; a loses all; each aa beats a, loses to aaa, ties the other aa: 1.5 of 3
    assert scores == pytest.approx([1.0, 0.0, 0.5, 0.5])


def test_sampling_needs_two_answers_and_chunks_by_prompts():
    with pytest.raises(ValueError, match="samples_per_prompt must be >= 2"):
        Sampling(samples_per_prompt=1)
    assert Sampling(samples_per_prompt=4, batch_size=16).prompts_per_chunk == 4


def test_the_rounds_pairs_are_read_back_by_data_jsonl(tmp_path, tokenizer):
    pairs = build_pairs(SAMPLES, SCORES, PairRule())
    write_pairs(tmp_path / "pairs.jsonl", pairs)
    assert read_pairs(tmp_path / "pairs.jsonl") == pairs  # one writer, one reader
    first = json.loads((tmp_path / "pairs.jsonl").read_text().splitlines()[0])
    assert list(first) == ["prompt", "chosen", "rejected", "chosen_score", "rejected_score"]  # TRL's keys first
    loaded = PreferenceFormat().load(read_json_rows(tmp_path / "pairs.jsonl"))
    assert [(p.prompt, p.chosen, p.rejected) for p in loaded] == [(p.prompt, p.chosen, p.rejected) for p in pairs]
    data = preference_data(
        format=PreferenceFormat(),
        path=str(tmp_path / "pairs.jsonl"),
        val_path=str(tmp_path / "pairs.jsonl"),
        tokenizer=tokenizer,
        chat_template=True,
    )
    data.setup()
    assert len(data.train_tokens) == len(data.val_tokens) == 3


def test_the_sampling_backend_is_checked_and_vllm_is_never_required(monkeypatch):
    with pytest.raises(ValueError, match="backend must be one of hf, vllm, auto"):
        Sampling(backend="sglang")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "vllm" else object())
    assert chosen_backend("auto") == "hf" and chosen_backend("hf") == "hf"
    with pytest.raises(ImportError, match="backend=vllm: vllm is not installed"):
        chosen_backend("vllm")


def test_the_datas_chosen_answer_is_ranked_among_the_samples_and_pairs_say_their_sources():
    rule = PairRule(data_chosen=True)
    sample = rule.candidates({"prompt": "q", "answers": ["a", "bb"]}, "data answer")
    assert sample["answers"] == ["a", "bb", "data answer"] and sample["sources"] == ["policy", "policy", "data"]
    (pair,) = build_pairs([sample], [[0.2, -1.0, 3.0]], rule)  # the data's answer best, the policy's "bb" worst
    assert (pair.chosen, pair.rejected) == ("data answer", "bb")
    assert (pair.chosen_source, pair.rejected_source) == ("data", "policy")
    (pair,) = build_pairs([sample], [[5.0, -1.0, 3.0]], rule)  # a sample the judge ranks above the data's answer
    assert pair.chosen_source == "policy" and pair.chosen == "a"
    plain = PairRule().candidates({"prompt": "q", "answers": ["a", "b"]}, "data answer")
    assert plain["answers"] == ["a", "b"] and build_pairs([plain], [[1.0, 0.0]], PairRule())[0].chosen_source is None
    with pytest.raises(ValueError, match="no chosen answer in the data for prompt 'q'"):
        rule.candidates({"prompt": "q", "answers": ["a", "b"]}, None)


def test_exact_answers_pair_a_right_sample_against_a_wrong_one_and_count_the_rest():
    from dpo_lightning.judges.functions import FunctionJudge, exact_match

    samples = [
        {"prompt": "6+12?", "answers": ["#### 18", "#### 17", "#### 18", "#### 16"], "columns": {"answer": "18"}},
        {"prompt": "2+2?", "answers": ["#### 4", "#### 4", "#### 4", "#### 4"], "columns": {"answer": "4"}},
        {"prompt": "3x3?", "answers": ["#### 6", "#### 8", "#### 1", "#### 0"], "columns": {"answer": "9"}},
        {"prompt": "5-1?", "answers": ["#### 4", "#### 3", "#### 5", "#### 2"], "columns": {"answer": None}},
    ]
    scores = _score(FunctionJudge([exact_match]), samples)  # the judge reads each prompt's `answer` column
    assert scores[:3] == [[1.0, 0.0, 1.0, 0.0], [1.0] * 4, [0.0] * 4]
    assert all(x != x for x in scores[3])  # no answer to check: unscored (NaN)
    report = {}
    (pair,) = build_pairs(samples, scores, PairRule(), report)
    assert (pair.chosen, pair.rejected, pair.columns["answer"]) == ("#### 18", "#### 17", "18")  # the columns go along
    assert report == {"prompts": 4, "pairs": 1, "pairs_before_cap": 1,
                      "no_pair": {"all tied at 1": 1, "all tied at 0": 1, "unscored": 1}}  # fmt: skip


def test_chosen_from_the_data_and_a_cap_on_the_pairs():
    rule = PairRule(chosen="data")
    samples = [rule.candidates({"prompt": f"q{i}", "answers": ["w1", "w2"]}, f"data{i}") for i in range(5)]
    scores = [[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.5, 0.0, 1.0]]
    pairs = build_pairs(samples, scores, rule)
    # the data's answer is always the chosen side, against the policy's worst; none where no sample is worse
    assert [(p.chosen, p.rejected, p.chosen_source, p.rejected_source) for p in pairs] == [
        ("data0", "w1", "data", "policy"),
        ("data1", "w2", "data", "policy"),
        ("data3", "w1", "data", "policy"),
        ("data4", "w2", "data", "policy"),
    ]
    capped, report = build_pairs(samples, scores, PairRule(chosen="data", max_pairs=2), {}, seed=3), {}
    again = build_pairs(samples, scores, PairRule(chosen="data", max_pairs=2), report, seed=3)
    assert capped == again and len(capped) == 2 and all(p in pairs for p in capped)  # a seeded choice, in order
    assert report["pairs"] == 2 and report["pairs_before_cap"] == 4
    with pytest.raises(ValueError, match="online.pairs.chosen must be best or data"):
        PairRule(chosen="worst")


def test_a_round_pair_keeps_the_data_rows_columns_beside_its_own_keys():
    row = {"prompt": "6+12?", "chosen": "#### 18", "rejected": "#### 17", "chosen_source": "data", "answer": "18"}
    pair = RoundPair.from_dict(row)
    assert pair.columns == {"answer": "18"} and pair.chosen_score is None and pair.chosen_source == "data"
    assert pair.to_dict() == row
