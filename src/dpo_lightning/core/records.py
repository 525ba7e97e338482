"""JSON lines on disk, the one way every phase writes and reads its rows (samples, scores, pairs, generations):
read (a missing file is no rows), appended chunk by chunk (a stopped run keeps what it wrote), or replaced whole
through a temporary file (never half-written). The online loop's rows are typed records here, each with one writer
and one reader (`Sample`, the scores, `RoundPair`); the evaluation's are in `evaluation/records.py`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def read_lines(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a") as f:
        f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        f.flush()


def atomic_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    os.replace(tmp, path)


# -- the online loop's rows: samples.jsonl, scores.jsonl, pairs.jsonl (one line per prompt each) ----------------------


@dataclass
class Sample:
    """A prompt's K answers from the policy (samples.jsonl)."""

    prompt: Any  # text, or chat messages
    answers: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "answers": self.answers}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Sample:
        return cls(row["prompt"], list(row["answers"]))


@dataclass
class RoundPair:
    """A round's preference pair (pairs.jsonl), in TRL's format, so `data=jsonl` trains on the file as it is: the
    judge's scores of both sides, where each side came from (the policy or the data), and the data row's own
    columns (a problem's `answer`) spread beside them."""

    prompt: Any
    chosen: Any  # text, or assistant turns for a chat prompt
    rejected: Any
    chosen_score: float | None = None
    rejected_score: float | None = None
    chosen_source: str | None = None  # policy | data
    rejected_source: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)

    NAMED = ("prompt", "chosen", "rejected", "chosen_score", "rejected_score", "chosen_source", "rejected_source")

    def to_dict(self) -> dict[str, Any]:
        named = {name: getattr(self, name) for name in self.NAMED}
        return {**{k: v for k, v in named.items() if v is not None}, **self.columns}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> RoundPair:
        named = {k: row.get(k) for k in cls.NAMED}
        return cls(**named, columns={k: v for k, v in row.items() if k not in cls.NAMED})


def read_samples(path: Path) -> list[Sample]:
    return [Sample.from_dict(row) for row in read_lines(path)]


def append_samples(path: Path, samples: list[Sample]) -> None:
    append_lines(path, [s.to_dict() for s in samples])


def read_scores(path: Path) -> list[list[float]]:
    """scores.jsonl: one line per prompt, {"scores": [one per answer]} (NaN: an answer the judge could not score)."""
    return [list(row["scores"]) for row in read_lines(path)]


def append_scores(path: Path, scores: list[list[float]]) -> None:
    append_lines(path, [{"scores": s} for s in scores])


def read_pairs(path: Path) -> list[RoundPair]:
    return [RoundPair.from_dict(row) for row in read_lines(path)]


def write_pairs(path: Path, pairs: list[RoundPair]) -> None:
    atomic_lines(path, [p.to_dict() for p in pairs])
