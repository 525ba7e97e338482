"""Every kind of bad input, each a real file in tests/data/bad_inputs/: by default a clear error naming the file,
the line and the field; with data.on_bad_row=skip the row is dropped, counted by reason and reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dpo_lightning.data import DataError, HHFormat, PreferenceFormat, preference_data

FILES = Path(__file__).parent / "bad_inputs"

# file, format, (line, field) named by the default error, the skip reason, pairs kept when skipping
CASES = [
    ("malformed_json.jsonl", PreferenceFormat, r"malformed_json\.jsonl:2: malformed JSON", "malformed_json", 2),
    ("missing_field.jsonl", PreferenceFormat, r"missing_field\.jsonl:3: field 'rejected': missing", "missing_field", 2),
    (
        "wrong_type.jsonl",
        PreferenceFormat,
        r"wrong_type\.jsonl:2: field 'chosen': expected a string, got int",
        "wrong_type",
        2,
    ),
    ("empty_chosen.jsonl", PreferenceFormat, r"empty_chosen\.jsonl:2: field 'chosen': empty", "empty_value", 2),
    (
        "identical.jsonl",
        PreferenceFormat,
        r"identical\.jsonl:3: field 'rejected': identical to chosen",
        "identical_responses",
        2,
    ),
    ("invalid_utf8.jsonl", PreferenceFormat, r"invalid_utf8\.jsonl:2: invalid UTF-8 at byte 15", "invalid_utf8", 2),
    ("empty.jsonl", PreferenceFormat, r"empty\.jsonl: empty file: no rows", "empty_file", 0),
    (
        "truncated.jsonl.gz",
        PreferenceFormat,
        r"truncated\.jsonl\.gz:\d+: corrupt or truncated file after line \d+",
        "truncated_file",
        None,
    ),
    (
        "hh_prompt_mismatch.jsonl",
        HHFormat,
        r"hh_prompt_mismatch\.jsonl:2: field 'rejected': shares no Assistant turn",
        "prompt_mismatch",
        2,
    ),
]


def datamodule(tokenizer, name, fmt, **kwargs):
    return preference_data(
        fmt(), str(FILES / name), tokenizer, val_path=str(FILES / name), max_length=128, max_prompt_length=64, **kwargs
    )


@pytest.mark.parametrize("name, fmt, message, reason, kept", CASES, ids=[c[0] for c in CASES])
def test_default_is_a_clear_error(tokenizer, name, fmt, message, reason, kept):
    with pytest.raises(DataError, match=message) as info:
        datamodule(tokenizer, name, fmt).setup()
    assert info.value.reason == reason


@pytest.mark.parametrize("name, fmt, message, reason, kept", CASES, ids=[c[0] for c in CASES])
def test_skip_drops_counts_and_reports(tokenizer, tmp_path, name, fmt, message, reason, kept):
    report = tmp_path / "data_report.json"
    dm = datamodule(tokenizer, name, fmt, on_bad_row="skip", report_path=str(report))
    if kept == 0:  # nothing left to train on is still an error, after the skip is counted
        with pytest.raises(ValueError, match="no training pairs"):
            dm.setup()
        return
    dm.setup()
    saved = json.loads(report.read_text())
    for split in ("train", "val"):
        bad = saved[split]["bad_rows"]
        assert bad["by_reason"] == {reason: 1} and bad["skipped"] == 1
        assert name in bad["first"][reason][0]  # where it was, for the user to fix
    if kept is not None:
        assert len(dm.train_pairs) == kept and saved["train"]["pairs"] == kept
    else:  # a truncated .gz keeps the complete lines before the cut
        assert 0 < len(dm.train_pairs) < 40


def test_a_prompt_longer_than_max_length_is_truncated_or_dropped_and_counted(tokenizer, tmp_path):
    name = "long_prompt.jsonl"
    dm = datamodule(tokenizer, name, PreferenceFormat, report_path=str(tmp_path / "r.json"))
    dm.setup()
    long_pair = dm.train_tokens[1]
    assert long_pair.truncated and len(long_pair.prompt) == 64
    assert len(long_pair.prompt) + max(len(long_pair.chosen), len(long_pair.rejected)) <= 128
    assert json.loads((tmp_path / "r.json").read_text())["train"] == {
        "bad_rows": {"skipped": 0, "by_reason": {}, "first": {}},
        "pairs": 3,
        "truncated": 1,
        "dropped_overlong": 0,
    }
    dropped = datamodule(
        tokenizer, name, PreferenceFormat, truncation_mode="drop", report_path=str(tmp_path / "d.json")
    )
    dropped.setup()
    assert len(dropped.train_pairs) == len(dropped.train_tokens) == 2
    assert json.loads((tmp_path / "d.json").read_text())["train"]["dropped_overlong"] == 1


def test_hh_mismatch_policy_error_names_the_line():
    from dpo_lightning.data import read_json_rows

    with pytest.raises(DataError, match=r"hh_prompt_mismatch\.jsonl:2: field 'rejected'"):
        HHFormat(on_prompt_mismatch="error").load(read_json_rows(FILES / "hh_prompt_mismatch.jsonl"))


def test_invalid_policy_is_refused(tokenizer):
    with pytest.raises(ValueError, match="on_bad_row"):
        datamodule(tokenizer, "identical.jsonl", PreferenceFormat, on_bad_row="ignore")
