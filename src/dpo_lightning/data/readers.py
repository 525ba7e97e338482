"""Reading preference data: rows with where they came from (`file:line`, `file:row i`, or `dataset[split]:row i`).

One entry point, `iter_rows`, for every source: JSON lines and JSON files (.json, .jsonl, optionally .gz) are read
line by line here, so a bad line is named by its number; parquet, arrow and CSV files, dataset folders (as the Hub
lays them out, or `save_to_disk`) and Hub dataset ids go through `datasets`, their rows named by index. Every reader
is lazy: with `streaming` nothing is held in memory beyond the current row (datasets' streaming mode).

A bad line is not raised from inside the reader (that would end the iteration) but yielded as a `DataError` in
its place, so `BadRows` can stop at it (the default) or skip and count it.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from ..core.errors import UsageError
from ..core.hub import looks_local
from .arithmetic import arithmetic_problems


class DataError(UsageError):
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


JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
# File suffix -> the `datasets` builder that reads it.
COLUMNAR_BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".csv.gz": "csv", ".tsv": "csv"}
DATA_SUFFIXES = (*JSON_SUFFIXES, *COLUMNAR_BUILDERS, ".gz")
BUILTIN_PREFIX = "builtin:"
ARITHMETIC = "builtin:arithmetic"  # data/arithmetic.py's generated problems (splits train, test)


def is_local(path: str | Path) -> bool:
    """A local file (existing, path-like, or named like a data file) rather than a hub dataset id (`hub.looks_local`,
    with this module's data suffixes)."""
    return looks_local(path) or str(path).endswith(DATA_SUFFIXES)


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


def builtin_file(name: str) -> Path:
    """The package-data file of the built-in preference set (`builtin:train` -> data/builtin/train.jsonl)."""

    path = Path(str(resources.files("dpo_lightning.data") / "builtin" / f"{name}.jsonl"))
    if not path.is_file():
        raise FileNotFoundError(f"no built-in data split {name!r} ({path})")
    return path


def iter_rows(
    path: str, split: str = "train", subset: str | None = None, data_dir: str | None = None, streaming: bool = False
) -> Iterator[Row]:
    """Rows with their origin from `builtin:<split>`, a local file or folder, or a Hub dataset id."""
    if path == ARITHMETIC:  # the built-in word problems: generated, seeded, no file
        return ((f"{path}[{split}]:row {i}", row) for i, row in enumerate(arithmetic_problems(split)))
    if path.startswith(BUILTIN_PREFIX):
        return read_json_rows(builtin_file(path[len(BUILTIN_PREFIX) :]))
    if not is_local(path):
        return read_dataset_rows(path, split, subset, data_dir, streaming)
    local = Path(path).expanduser()
    if local.is_dir():
        return read_dataset_rows(str(local), split, subset, data_dir, streaming)
    builder = next((b for suffix, b in COLUMNAR_BUILDERS.items() if local.name.endswith(suffix)), None)
    if builder:
        return read_columnar_rows(local, builder, streaming)
    return read_json_rows(local)


def read_columnar_rows(path: Path, builder: str, streaming: bool = False) -> Iterator[Row]:
    """Yield (`file:row i`, row) from a parquet, arrow or CSV file, read by `datasets` (row i counts from 0)."""
    kwargs = {"delimiter": "\t"} if path.name.endswith(".tsv") else {}
    yield from _dataset_rows(
        str(path), f"{path}:row ", builder, data_files=str(path), split="train", streaming=streaming, **kwargs
    )


def read_dataset_rows(
    name: str, split: str, subset: str | None = None, data_dir: str | None = None, streaming: bool = False
) -> Iterator[Row]:
    """Yield (`name[split]:row i`, row) from a Hub dataset id or a local dataset folder (Hub layout, or one
    written by `Dataset.save_to_disk`)."""
    folder = Path(name).expanduser()
    if (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file():
        yield from _saved_dataset_rows(folder, split)
        return
    where = f"{name}[{split}]:row "
    yield from _dataset_rows(name, where, name, subset, data_dir=data_dir, split=split, streaming=streaming)


def _dataset_rows(source: str, where: str, *args: Any, **kwargs: Any) -> Iterator[Row]:
    import datasets

    try:
        ds = datasets.load_dataset(*args, **kwargs)
        for i, row in enumerate(ds):
            yield f"{where}{i}", row
    except (ValueError, OSError, datasets.exceptions.DatasetGenerationError) as e:
        # datasets wraps arrow's errors (an unreadable file or schema): the file is named, with arrow's own reason.
        cause = e.__cause__ or e
        yield source, DataError(source, None, f"unreadable ({type(cause).__name__}: {cause})", "unreadable_file")


def _saved_dataset_rows(folder: Path, split: str) -> Iterator[Row]:
    import datasets

    ds = datasets.load_from_disk(str(folder))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{folder}: no split {split!r} (it has {sorted(ds)})")
        ds = ds[split]
    for i, row in enumerate(ds):
        yield f"{folder}[{split}]:row {i}", row


def _object(row: Any, where: str) -> dict[str, Any] | DataError:
    if not isinstance(row, dict):
        return DataError(where, None, f"expected a JSON object, got {type(row).__name__}", "not_an_object")
    return row
