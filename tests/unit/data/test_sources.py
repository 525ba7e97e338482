"""Every way pairs reach training: each file type read through one entry point (`iter_rows`), TRL's standard and
conversational forms with explicit and implicit prompts, bad rows of columnar files named by row, mixtures in set
proportions, and streaming that gives the in-memory batches and resumes exactly."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from itertools import islice

import datasets
import pytest
import torch

from dpo_lightning.data import (
    DataError,
    PreferenceDataModule,
    PreferenceFormat,
    iter_rows,
    mixture_data,
    preference_data,
)
from dpo_lightning.data.collate import pair_key
from dpo_lightning.data.streaming import MIX_BLOCK

USER = {"role": "user", "content": "Is the sky green?"}
GOOD = {"role": "assistant", "content": "No, it is usually blue."}
BAD = {"role": "assistant", "content": "Yes."}


def text_rows(n: int, tag: str = "q") -> list[dict]:
    return [{"prompt": f"{tag} {i}?", "chosen": f"good answer {i}", "rejected": f"bad {i}"} for i in range(n)]


def write(path, rows, kind: str):
    """`rows` as a file of the given kind, written the way users make them (datasets, pandas, json)."""
    if kind in ("jsonl", "jsonl.gz"):
        opener = gzip.open if kind.endswith("gz") else open
        with opener(path, "wt", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
    elif kind == "json":
        path.write_text(json.dumps(rows))
    elif kind == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    elif kind == "csv":
        datasets.Dataset.from_list(rows).to_csv(str(path), index=False)
    elif kind == "arrow":
        import pyarrow as pa

        table = datasets.Dataset.from_list(rows).data.table
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    elif kind == "saved":
        datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(path))
    elif kind == "hub_folder":  # a Hub dataset repository cloned locally: data/<split>-*.parquet
        (path / "data").mkdir(parents=True)
        datasets.Dataset.from_list(rows).to_parquet(str(path / "data" / "train-00000-of-00001.parquet"))
        datasets.Dataset.from_list(rows[:2]).to_parquet(str(path / "data" / "test-00000-of-00001.parquet"))
    return path


KINDS = {
    "jsonl": "p.jsonl",
    "jsonl.gz": "p.jsonl.gz",
    "json": "p.json",
    "parquet": "p.parquet",
    "csv": "p.csv",
    "arrow": "p.arrow",
    "saved": "saved",
    "hub_folder": "repo",
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("streaming", [False, True])
def test_every_file_type_gives_the_same_pairs(tmp_path, kind, streaming):
    rows = text_rows(5)
    path = write(tmp_path / KINDS[kind], rows, kind)
    pairs = PreferenceFormat().load(iter_rows(str(path), "train", streaming=streaming))
    assert [(p.prompt, p.chosen, p.rejected) for p in pairs] == [
        (r["prompt"], r["chosen"], r["rejected"]) for r in rows
    ]
    where = {"jsonl": "p.jsonl:3", "json": "p.json:item 2", "parquet": "p.parquet:row 2", "saved": "[train]:row 2"}
    if kind in where:
        assert pairs[2].where.endswith(where[kind])
    if kind == "hub_folder":  # the split is picked by name, as on the Hub
        assert len(PreferenceFormat().load(iter_rows(str(path), "test"))) == 2


def test_standard_and_conversational_with_explicit_and_implicit_prompts(tmp_path):
    rows = [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},  # standard, explicit
        {"chosen": "The sky is blue.", "rejected": "The sky is green."},  # standard, implicit
        {"prompt": [USER], "chosen": [GOOD], "rejected": [BAD]},  # conversational, explicit
        {"chosen": [USER, GOOD], "rejected": [USER, BAD]},  # conversational, implicit
        {"prompt": USER["content"], "chosen": [USER, GOOD], "rejected": [USER, BAD]},  # ultrafeedback-binarized
    ]
    path = write(tmp_path / "p.parquet", rows[:2], "parquet")
    a, b = PreferenceFormat().load(iter_rows(str(path)))
    assert (a.prompt, a.chosen, a.rejected) == (b.prompt, b.chosen, b.rejected) == ("The sky is", " blue.", " green.")
    for row in rows[2:]:
        pair = PreferenceFormat().parse(row, "x")
        assert (pair.prompt, pair.chosen, pair.rejected) == ([USER], [GOOD], [BAD])
    with pytest.raises(DataError, match=r"x: field 'prompt': missing, and chosen/rejected share no leading words"):
        PreferenceFormat().parse({"chosen": "Yes.", "rejected": "No."}, "x")
    with pytest.raises(DataError, match=r"x: field 'prompt': differs from the 1 message"):
        PreferenceFormat().parse({"prompt": "Other?", "chosen": [USER, GOOD], "rejected": [USER, BAD]}, "x")


def test_bad_rows_of_a_parquet_file_are_named_by_row(tmp_path, tokenizer):
    rows = text_rows(6)
    rows[2]["chosen"] = None  # a null cell
    rows[4]["rejected"] = rows[4]["chosen"]
    path = write(tmp_path / "bad.parquet", rows, "parquet")
    with pytest.raises(DataError, match=r"bad\.parquet:row 2: field 'chosen': empty \(null\)"):
        PreferenceFormat().load(iter_rows(str(path)))
    dm = preference_data(PreferenceFormat(), str(path), tokenizer, val_path=str(path), on_bad_row="skip")
    dm.setup()
    assert len(dm.train_tokens) == 4
    skipped = dm.report["train"]["bad_rows"]
    assert skipped["by_reason"] == {"empty_value": 1, "identical_responses": 1}
    assert skipped["first"]["identical_responses"][0].startswith(f"{path}:row 4: field 'rejected'")


def test_an_unreadable_columnar_file_is_named(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataError, match=r"broken\.parquet: unreadable"):
        PreferenceFormat().load(iter_rows(str(path)))


# -- mixtures ---------------------------------------------------------------------------------------------------
def source(path, **kwargs) -> PreferenceDataModule:
    return preference_data(PreferenceFormat(), str(path), val_fraction=0.1, **kwargs)


def mixture(tmp_path, tokenizer, **kwargs) -> PreferenceDataModule:
    a = write(tmp_path / "a.jsonl", text_rows(40, "a"), "jsonl")
    b = write(tmp_path / "b.parquet", text_rows(200, "b"), "parquet")
    return mixture_data(
        {"a": source(a), "b": source(b)}, tokenizer=tokenizer, max_length=64, max_prompt_length=32, **kwargs
    )


def train_sources(dm) -> Counter:
    return Counter(str(p.prompt)[0] for p in dm.train_pairs)


def test_a_mixture_draws_exact_proportions_and_reports_each_source(tmp_path, tokenizer):
    dm = mixture(tmp_path, tokenizer, weights={"a": 0.25, "b": 0.75}, size=120)
    dm.setup()
    assert train_sources(dm) == {"a": 30, "b": 90}  # 36 and 180 available after each source's 10% validation
    assert len(dm.val_pairs) == 4 + 20  # every source's validation, pooled
    report = dm.report["sources"]
    assert report["a"]["train_available"] == 36 and report["a"]["train_drawn"] == 30 and report["a"]["val"] == 4
    assert report["b"]["train_pairs"] == 90 and report["b"]["val_pairs"] == 20

    again = mixture(tmp_path, tokenizer, weights={"a": 0.25, "b": 0.75}, size=120)
    again.setup()
    assert [p.prompt for p in again.train_pairs] == [p.prompt for p in dm.train_pairs]  # deterministic given seed

    upsampled = mixture(tmp_path, tokenizer, pairs={"a": 90, "b": 10})
    upsampled.setup()
    drawn = Counter(p.prompt for p in upsampled.train_pairs if p.prompt.startswith("a"))
    assert train_sources(upsampled) == {"a": 90, "b": 10}
    assert sorted(set(drawn.values())) == [2, 3]  # 36 pairs, each twice, 18 of them a third time


def test_a_mixture_refuses_names_it_does_not_have(tmp_path, tokenizer):
    with pytest.raises(ValueError, match=r"data.weights: names must match data.sources \['a', 'b'\].*unknown: \['c'\]"):
        mixture(tmp_path, tokenizer, weights={"a": 1, "b": 1, "c": 1})
    with pytest.raises(ValueError, match="give one of them"):
        mixture(tmp_path, tokenizer, weights={"a": 1, "b": 1}, pairs={"a": 1, "b": 1})
    with pytest.raises(ValueError, match=r"data.pairs.a must be a positive integer"):
        mixture(tmp_path, tokenizer, pairs={"a": 0.5, "b": 1})


# -- streaming --------------------------------------------------------------------------------------------------
def batches(loader, n):
    return [(b.input_ids.clone(), b.pair_keys.clone()) for b in islice(iter(loader), n)]


def set_rank(dm, rank, world):
    dm._rank_and_world = lambda: (rank, world)


@pytest.mark.parametrize("world", [1, 2])
def test_streaming_gives_the_in_memory_batches_for_the_same_seed(tmp_path, tokenizer, world):
    path = write(tmp_path / "p.parquet", text_rows(64), "parquet")
    val = write(tmp_path / "v.jsonl", text_rows(4, "v"), "jsonl")
    common = dict(tokenizer=tokenizer, val_path=str(val), max_length=64, max_prompt_length=32, batch_size=4, seed=7)
    for rank in range(world):
        memory = preference_data(PreferenceFormat(), str(path), **common)
        stream = preference_data(PreferenceFormat(), str(path), streaming=True, shuffle_buffer=64, **common)
        for dm in (memory, stream):
            dm.setup()
            set_rank(dm, rank, world)
        n = 64 // (4 * world)  # the whole first epoch
        for (ids_a, keys_a), (ids_b, keys_b) in zip(
            batches(memory.train_dataloader(), n), batches(stream.train_dataloader(), n), strict=True
        ):
            assert torch.equal(keys_a, keys_b) and torch.equal(ids_a, ids_b)


def test_a_stream_shuffles_in_windows_covers_every_pair_each_epoch_and_resumes_exactly(tmp_path, tokenizer):
    path = write(tmp_path / "p.jsonl", text_rows(50), "jsonl")
    val = write(tmp_path / "v.jsonl", text_rows(4, "v"), "jsonl")
    dm = preference_data(
        PreferenceFormat(), str(path), tokenizer, val_path=str(val), streaming=True, shuffle_buffer=16, batch_size=5
    )
    dm.setup()
    straight = batches(dm.train_dataloader(), 30)  # 3 epochs of 10 batches
    for epoch in range(3):
        keys = torch.cat([k for _, k in straight[epoch * 10 : (epoch + 1) * 10]])
        assert len(set(keys.tolist())) == 50  # each pair once per epoch
    assert not torch.equal(straight[0][1], straight[10][1])  # a new order each epoch
    loader = dm.train_dataloader()
    positions = [b.stream_position for b in islice(iter(loader), 13)]
    resumed = dm.train_dataloader()
    resumed.resume_at(positions[-1])  # after batch 13: epoch 1, inside its second window
    for (ids_a, keys_a), (ids_b, keys_b) in zip(straight[13:], batches(resumed, 17), strict=True):
        assert torch.equal(keys_a, keys_b) and torch.equal(ids_a, ids_b)


def test_a_streamed_mixture_keeps_its_proportions_and_resumes_exactly(tmp_path, tokenizer):
    a = write(tmp_path / "a.jsonl", text_rows(300, "a"), "jsonl")
    b = write(tmp_path / "b.parquet", text_rows(100, "b"), "parquet")
    val = str(write(tmp_path / "v.jsonl", text_rows(4, "v"), "jsonl"))
    dm = mixture_data(
        {"a": source(a, val_path=val), "b": source(b, val_path=val)},
        weights={"a": 0.7, "b": 0.3},
        tokenizer=tokenizer,
        streaming=True,
        shuffle_buffer=64,
        batch_size=8,
    )
    dm.setup()
    from_a = {pair_key(dm.pair_tokenizer(p)) for p in PreferenceFormat().load(iter_rows(str(a)))}
    straight = [b.pair_keys.clone() for b in islice(iter(dm.train_dataloader()), 2 * MIX_BLOCK // 8)]
    keys = torch.cat(straight).tolist()
    # 0.7 of a block of 1024 is 716.8: 717 pairs of a per block, exactly (a repeats: 300 pairs, 1434 draws)
    assert sum(k in from_a for k in keys[:MIX_BLOCK]) == 717 and sum(k in from_a for k in keys) == 2 * 717
    positions = [b.stream_position for b in islice(iter(dm.train_dataloader()), 150)]
    resumed = dm.train_dataloader()
    resumed.resume_at(positions[-1])
    for expected, batch in zip(straight[150:], resumed):
        assert torch.equal(expected, batch.pair_keys)
