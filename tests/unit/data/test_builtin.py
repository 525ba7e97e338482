"""The built-in preference set ships with the package and has the promised size and shape."""

from __future__ import annotations

import json
from collections import Counter

from dpo_lightning.data import JsonlFormat, builtin_file, read_json_rows


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


def test_parses_and_has_a_card():
    assert len(JsonlFormat().load(read_json_rows(builtin_file("train")))) == len(rows("train"))
    assert "Categories" in (builtin_file("train").parent / "README.md").read_text()
