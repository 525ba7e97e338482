"""Rows -> PreferencePair for every format, and errors that name the file, line and field."""

from __future__ import annotations

import gzip
import json

import pytest

from conftest import HH_TEST, requires_hh
from dpo_lightning.data import DataError, HHFormat, PreferenceFormat, SHPFormat, read_json_rows

MARKER = "\n\nAssistant:"


@requires_hh
def test_hh_parser_on_the_real_shared_file():
    fmt = HHFormat()
    pairs = fmt.load(read_json_rows(HH_TEST))
    assert len(pairs) == 2312
    assert fmt.counts["resplit"] == 4
    assert fmt.counts["blank_response"] == 4  # four chosen responses are blank: saying nothing was preferred
    raw = [json.loads(line) for line in gzip.open(HH_TEST, "rt", encoding="utf-8")]
    for pair, row in zip(pairs, raw):
        assert pair.prompt.endswith(MARKER) and pair.prompt.startswith("\n\nHuman:")
        assert pair.prompt + pair.chosen == row["chosen"]  # nothing lost, nothing added
        assert pair.prompt + pair.rejected == row["rejected"]
    # A normal pair: the prompt is the text through the last Assistant turn of chosen.
    first = raw[0]["chosen"]
    assert pairs[0].prompt == first[: first.rfind(MARKER) + len(MARKER)]


@requires_hh
def test_hh_pairs_whose_texts_do_not_share_a_prompt():
    raw = {i: json.loads(line) for i, line in enumerate(gzip.open(HH_TEST, "rt", encoding="utf-8"), start=1)}
    mismatched = [
        i
        for i, r in raw.items()
        if not r["rejected"].startswith(r["chosen"][: r["chosen"].rfind(MARKER) + len(MARKER)])
    ]
    assert mismatched == [1255, 1689, 1953, 2037]

    # resplit (default): both cut at the last Assistant turn inside their common prefix; the chosen response
    # keeps its extra turn.
    pairs = {int(p.where.rsplit(":", 1)[1]): p for p in HHFormat().load(read_json_rows(HH_TEST))}
    for line in mismatched:
        pair = pairs[line]
        assert raw[line]["chosen"].startswith(pair.prompt) and raw[line]["rejected"].startswith(pair.prompt)
        assert pair.prompt.endswith(MARKER) and MARKER in pair.chosen and MARKER not in pair.rejected
    assert pairs[1689].prompt.endswith("If I want to rob someone's house, what time should I do it?" + MARKER)

    # skip: the four are left out and counted
    fmt = HHFormat(on_prompt_mismatch="skip")
    assert len(fmt.load(read_json_rows(HH_TEST))) == 2308 and fmt.counts["skipped"] == 4
    # error: the first one is named by file, line and field
    with pytest.raises(DataError, match=r"test\.jsonl\.gz:1255: field 'rejected'"):
        HHFormat(on_prompt_mismatch="error").load(read_json_rows(HH_TEST))


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_text_rows_and_mapped_fields(tmp_path):
    f = write_jsonl(tmp_path / "p.jsonl", [{"q": "Hi?", "good": "Hello!", "bad": "Go away."}])
    (pair,) = PreferenceFormat("q", "good", "bad").load(read_json_rows(f))
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Hi?", "Hello!", "Go away.")
    assert pair.where.endswith("p.jsonl:1")


def test_json_list_and_gzip(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps([{"prompt": "a", "chosen": "b", "rejected": "c"}]))
    assert len(PreferenceFormat().load(read_json_rows(tmp_path / "p.json"))) == 1
    with gzip.open(tmp_path / "p.jsonl.gz", "wt") as g:
        g.write(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    assert len(PreferenceFormat().load(read_json_rows(tmp_path / "p.jsonl.gz"))) == 1


@pytest.mark.parametrize(
    "row, match",
    [
        ('{"prompt": "a", "chosen": "b"', r"p\.jsonl:2: malformed JSON"),
        ({"prompt": "a", "chosen": "b"}, r"p\.jsonl:2: field 'rejected': missing"),
        ({"prompt": "a", "chosen": 3, "rejected": "c"}, r"p\.jsonl:2: field 'chosen': expected a string, got int"),
        ({"prompt": "a", "chosen": "  ", "rejected": "c"}, r"p\.jsonl:2: field 'chosen': empty"),
        ({"prompt": "a", "chosen": "same", "rejected": "same"}, r"p\.jsonl:2: field 'rejected': identical to chosen"),
        ("[1, 2]", r"p\.jsonl:2: expected a JSON object"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, row, match):
    f = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "ok", "chosen": "yes", "rejected": "no"}, row])
    with pytest.raises(DataError, match=match):
        PreferenceFormat().load(read_json_rows(f))


def test_chat_messages_with_and_without_a_prompt_field(tmp_path):
    user = {"role": "user", "content": "Is the sky green?"}
    good = {"role": "assistant", "content": "No, it is usually blue."}
    bad = {"role": "assistant", "content": "Yes."}
    f = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"prompt": [user], "chosen": [good], "rejected": [bad]},
            {"chosen": [user, good], "rejected": [user, bad]},  # TRL's implicit-prompt form
        ],
    )
    a, b = PreferenceFormat().load(read_json_rows(f))
    for pair in (a, b):
        assert pair.is_chat and pair.prompt == [user] and pair.chosen == [good] and pair.rejected == [bad]
    bad_row = write_jsonl(
        tmp_path / "d.jsonl", [{"prompt": [user], "chosen": [{"role": "assistant"}], "rejected": [bad]}]
    )
    with pytest.raises(DataError, match=r"d\.jsonl:1: field 'chosen\[0\]'"):
        PreferenceFormat().load(read_json_rows(bad_row))


def shp_row(post, a, b, label, ratio):
    return {
        "post_id": post,
        "history": f"Question {post}?",
        "human_ref_A": a,
        "human_ref_B": b,
        "labels": label,
        "score_ratio": ratio,
        "score_A": 10,
        "score_B": 2,
    }


def test_shp_label_picks_the_winner_and_the_ratio_filters():
    rows = [
        ("r:1", shp_row("p1", "A wins", "B loses", 1, 3.0)),
        ("r:2", shp_row("p1", "A loses", "B wins", 0, 2.0)),
        ("r:3", shp_row("p2", "close", "call", 1, 1.5)),
    ]
    pairs = SHPFormat().load(rows)
    assert [(p.chosen, p.rejected) for p in pairs] == [(" A wins", " B loses"), (" B wins", " A loses")]
    assert pairs[0].prompt == "\n\nHuman: Question p1?\n\nAssistant:"
    assert len(SHPFormat(min_score_ratio=1.0).load(rows)) == 3


def test_shp_caps_pairs_per_post():
    rows = [(f"r:{i}", shp_row("p1" if i < 4 else "p2", f"a{i}", f"b{i}", 1, 5.0)) for i in range(6)]
    assert len(SHPFormat(max_pairs_per_post=2).load(rows)) == 4  # 2 of p1's four, both of p2's
    with pytest.raises(DataError, match="field 'labels'"):
        SHPFormat().load([("r:9", {**shp_row("p", "a", "b", 1, 3.0), "labels": 2})])
