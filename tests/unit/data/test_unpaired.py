"""Unpaired rows for KTO: TRL's {prompt, completion, label} format (text and chat, labels as booleans, 0/1 or words),
bad rows named by file, line and field, a preference set split into labelled rows, each row given another prompt's
completion (a fixed derangement), labels carried to the batch, and streaming refused."""

from __future__ import annotations

import json

import pytest
from hydra.utils import instantiate

from conftest import compose
from dpo_lightning.data import (
    DataError,
    PackedPairCollator,
    PairCollator,
    PreferenceFormat,
    UnpairedFormat,
    UnpairedFromPairs,
    preference_data,
    read_json_rows,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


ROWS = [
    {"prompt": "Capital of France?", "completion": "Paris.", "label": True},
    {"prompt": "Capital of France?", "completion": "Lyon, obviously.", "label": False},
    {"prompt": "2 + 2?", "completion": "4", "label": 1},
    {"prompt": "2 + 2?", "completion": "5", "label": "false"},
    {"prompt": "Say hi.", "completion": "Hi!", "label": "True"},
]


def test_text_rows_labels_and_a_derangement_across_prompts(tmp_path):
    rows = UnpairedFormat().load(read_json_rows(write_jsonl(tmp_path / "u.jsonl", ROWS)))
    assert [r.label for r in rows] == [True, False, True, False, True]
    assert [r.chosen for r in rows] == [r["completion"] for r in ROWS]
    for row in rows:  # each row's mismatched completion belongs to another prompt's row
        owner = next(r for r in ROWS if r["completion"] == row.rejected)
        assert owner["prompt"] != row.prompt
    assert len({r.rejected for r in rows}) == len(rows)  # a permutation: every completion used once
    again = UnpairedFormat().load(read_json_rows(tmp_path / "u.jsonl"))
    assert [r.rejected for r in again] == [r.rejected for r in rows]  # fixed by the seed
    other = UnpairedFormat(seed=1).load(read_json_rows(tmp_path / "u.jsonl"))
    assert all(r.rejected != r.chosen for r in other)


def test_chat_rows(tmp_path):
    user = [{"role": "user", "content": "Hi?"}]
    rows = [
        {"prompt": user, "completion": [{"role": "assistant", "content": "Hello!"}], "label": True},
        {"prompt": "Bye?", "completion": [{"role": "assistant", "content": "Go away."}], "label": False},
    ]
    parsed = UnpairedFormat().load(read_json_rows(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert parsed[0].is_chat and parsed[1].prompt == [{"role": "user", "content": "Bye?"}]
    assert parsed[0].rejected == rows[1]["completion"] and parsed[1].rejected == rows[0]["completion"]


@pytest.mark.parametrize(
    "row, match",
    [
        ({"prompt": "a", "completion": "b"}, r"u\.jsonl:2: field 'label': expected true or false .* got missing"),
        ({"prompt": "a", "completion": "b", "label": "maybe"}, r"u\.jsonl:2: field 'label': .* got 'maybe'"),
        ({"prompt": "a", "completion": "b", "label": 2}, r"u\.jsonl:2: field 'label'"),
        ({"prompt": "a", "label": True}, r"u\.jsonl:2: field 'completion': missing"),
        ({"prompt": " ", "completion": "b", "label": True}, r"u\.jsonl:2: field 'prompt': empty"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, row, match):
    f = write_jsonl(tmp_path / "u.jsonl", [ROWS[0], row, ROWS[2]])
    with pytest.raises(DataError, match=match):
        UnpairedFormat().load(read_json_rows(f))


def test_a_single_row_cannot_estimate_the_reference_point(tmp_path):
    with pytest.raises(DataError, match="at least 2 rows"):
        UnpairedFormat().load(read_json_rows(write_jsonl(tmp_path / "u.jsonl", ROWS[:1])))


def test_a_preference_set_split_into_unpaired_rows(tmp_path):
    pairs = [{"prompt": f"q{i}?", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(4)]
    rows = UnpairedFromPairs(PreferenceFormat()).load(read_json_rows(write_jsonl(tmp_path / "p.jsonl", pairs)))
    assert len(rows) == 8 and sum(r.label for r in rows) == 4
    assert {(r.prompt, r.chosen, r.label) for r in rows} == {
        (p["prompt"], p[side], side == "chosen") for p in pairs for side in ("chosen", "rejected")
    }
    prompt_of = {p[side]: p["prompt"] for p in pairs for side in ("chosen", "rejected")}
    assert all(prompt_of[r.rejected] != r.prompt for r in rows)  # never the same prompt's other answer


def test_labels_reach_the_batch_and_the_report(tmp_path, tokenizer):
    f = write_jsonl(tmp_path / "u.jsonl", ROWS * 4)
    dm = preference_data(
        UnpairedFormat(), str(f), tokenizer=tokenizer, val_fraction=0.25, batch_size=4, eval_batch_size=4
    )
    dm.setup()
    labels = [t.label for t in dm.train_tokens]
    assert dm.label_counts == {"desirable": sum(labels), "undesirable": len(labels) - sum(labels)}
    for collator in (PairCollator(0), PackedPairCollator(0)):
        batch = collator(dm.train_tokens[:4])
        assert batch.pair_labels.tolist() == [int(x) for x in labels[:4]]


def test_preference_pairs_have_no_labels(tokenizer):
    dm = instantiate(compose("data=builtin").data, tokenizer=tokenizer, report_path=None)
    dm.setup()
    assert dm.label_counts is None
    assert PairCollator(0)(dm.train_tokens[:2]).pair_labels.tolist() == [-1, -1]


def test_streaming_is_refused_with_the_reason(tmp_path, tokenizer):
    f = write_jsonl(tmp_path / "u.jsonl", ROWS)
    with pytest.raises(ValueError, match="data.streaming=false"):
        preference_data(
            UnpairedFormat(), str(f), val_path=str(f), tokenizer=tokenizer, streaming=True, num_workers=0
        ).setup()


def test_the_config_options_compose():
    cfg = compose("data=unpaired_from_pairs", "loss=kto")
    assert cfg.data.format._target_.endswith("UnpairedFromPairs") and cfg.loss._target_.endswith("KTOLoss")
    cfg = compose("data=unpaired", "data.path=/x.jsonl")
    assert cfg.data.format._target_.endswith("UnpairedFormat") and "chosen_field" not in cfg.data.format
