"""Reading preference data: rows with where they came from (`file:line`, or `dataset[split]:row`).

A bad line is not raised from inside the reader (that would end the iteration) but yielded as a `DataError` in
its place, so `BadRows` can stop at it (the default) or skip and count it.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad input: the message names the file (or dataset), the line (or row) and the field; `reason` is a short
    code used to count skipped rows (`data.on_bad_row=skip`)."""

    def __init__(self, where: str, field_name: str | None, message: str, reason: str = "invalid_row") -> None:
        self.where, self.field, self.reason = where, field_name, reason
        super().__init__(f"{where}: field {field_name!r}: {message}" if field_name else f"{where}: {message}")


BAD_ROW_POLICIES = ("error", "skip")


class BadRows:
    """What to do with a bad row: `error` (default) raises its DataError; `skip` drops it and counts it by reason,
    keeping the first few places, so that nothing is dropped silently."""

    def __init__(self, policy: str = "error", keep: int = 5) -> None:
        if policy not in BAD_ROW_POLICIES:
            raise ValueError(f"data.on_bad_row must be one of {BAD_ROW_POLICIES}, got {policy!r}")
        self.policy, self.keep = policy, keep
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = {}

    def handle(self, error: DataError) -> None:
        if self.policy == "error":
            raise error
        self.counts[error.reason] += 1
        self.examples.setdefault(error.reason, [])
        if len(self.examples[error.reason]) < self.keep:
            self.examples[error.reason].append(str(error))

    def summary(self) -> dict[str, Any]:
        return {"skipped": sum(self.counts.values()), "by_reason": dict(self.counts), "first": self.examples}


DATA_SUFFIXES = (".json", ".jsonl", ".gz")


def is_local(path: str | Path) -> bool:
    """A local file (existing, path-like, or named like a data file) rather than a hub dataset id."""
    path = str(path)
    return path.startswith((".", "/", "~")) or path.endswith(DATA_SUFFIXES) or Path(path).expanduser().exists()


def check_data_path(key: str, value: str | None) -> None:
    """A local data file that does not exist is an error now, not after the model has loaded."""
    if value and is_local(str(value)) and not Path(str(value)).expanduser().exists():
        raise ValueError(f"data.{key}: file not found: {value}")


Row = tuple[str, "dict[str, Any] | DataError"]


def read_json_rows(path: str | Path) -> Iterator[Row]:
    """Yield (`file:line`, row) from a .jsonl / .jsonl.gz file, or from a .json file holding a list of objects.

    A bad line is yielded as a `DataError` in place of its row (malformed JSON, invalid UTF-8, not an object), so the
    caller decides whether to stop or skip; a gzip stream that ends early yields one error after its last full line.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    stem = path.name[: -len(".gz")] if path.suffix == ".gz" else path.name
    if stem.endswith(".json"):
        yield from _read_json_list(path)
        return
    opener = gzip.open if path.suffix == ".gz" else open
    lineno, seen = 0, 0
    with opener(path, "rb") as f:
        try:
            for lineno, raw in enumerate(f, start=1):
                where = f"{path}:{lineno}"
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    yield where, DataError(where, None, f"invalid UTF-8 at byte {e.start} of the line", "invalid_utf8")
                    continue
                if not line.strip():
                    continue
                seen += 1
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    yield (
                        where,
                        DataError(where, None, f"malformed JSON ({e.msg} at column {e.colno})", "malformed_json"),
                    )
                    continue
                yield where, _object(row, where)
        except (EOFError, gzip.BadGzipFile, OSError) as e:
            yield (
                f"{path}:{lineno + 1}",
                DataError(
                    f"{path}:{lineno + 1}",
                    None,
                    f"corrupt or truncated file after line {lineno} ({e})",
                    "truncated_file",
                ),
            )
    if seen == 0:
        yield str(path), DataError(str(path), None, "empty file: no rows", "empty_file")


def _read_json_list(path: Path) -> Iterator[Row]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            rows = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError, EOFError, OSError) as e:
        yield str(path), DataError(str(path), None, f"unreadable .json file ({e})", "malformed_json")
        return
    if not isinstance(rows, list):
        yield str(path), DataError(str(path), None, "a .json data file must hold a list of objects", "not_a_list")
        return
    for i, row in enumerate(rows):
        yield f"{path}:item {i}", _object(row, f"{path}:item {i}")


def read_hub_rows(name: str, split: str, subset: str | None = None, data_dir: str | None = None) -> Iterator[Row]:
    """Yield (`name[split]:row`, row) from a Hugging Face Hub dataset."""
    import datasets

    ds = datasets.load_dataset(name, subset, data_dir=data_dir, split=split)
    for i, row in enumerate(ds):
        yield f"{name}[{split}]:row {i}", row


def _object(row: Any, where: str) -> dict[str, Any] | DataError:
    if not isinstance(row, dict):
        return DataError(where, None, f"expected a JSON object, got {type(row).__name__}", "not_an_object")
    return row
