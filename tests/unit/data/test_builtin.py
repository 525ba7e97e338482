"""The built-in preference set ships with the package and has the promised size and shape."""

from __future__ import annotations

import json
from collections import Counter

from dpo_lightning.data import PreferenceFormat, builtin_file, read_json_rows


def rows(split):
    return [json.loads(line) for line in builtin_file(split).read_text().splitlines()]


def test_size_categories_and_held_out_split():
    train, val = rows("train"), rows("val")
    assert len(train) + len(val) >= 200 and len(val) >= 40
    cats = Counter(r["category"] for r in train + val)
    assert len(cats) >= 8 and min(cats.values()) >= 20
    assert set(r["category"] for r in val) == set(cats)  # every kind is held out too
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in val}
    for r in train + val:
        assert r["chosen"] != r["rejected"] and all(r[k].strip() for k in ("prompt", "chosen", "rejected"))
        assert len(r["chosen"].split()) >= 15  # an answer that helps, not a bare refusal


def test_judge_split_is_disjoint_balanced_and_partly_evasive():
    train, val, judge = rows("train"), rows("val"), rows("judge")
    assert len(judge) == 150
    prompts = {r["prompt"].lower() for r in train + val}
    assert not {r["prompt"].lower() for r in judge} & prompts  # the judge never sees a policy's training prompt
    by_category = Counter(r["category"] for r in judge)
    assert set(by_category) == {r["category"] for r in train} and set(by_category.values()) == {15}
    kinds = Counter((r["category"], r["rejected_kind"]) for r in judge)
    assert all(kinds[(c, "evasive")] == 5 and kinds[(c, "misaligned")] == 10 for c in by_category)
    for r in judge:
        assert r["chosen"] != r["rejected"] and len(r["chosen"].split()) >= 15


def test_parses_and_has_a_card():
    assert len(PreferenceFormat().load(read_json_rows(builtin_file("train")))) == len(rows("train"))
    assert "Categories" in (builtin_file("train").parent / "README.md").read_text()
