"""The files an evaluation leaves in its folder, each with one writer and one reader, as typed records: what the
model card, head to head, the blind reading, the online loop's table and the sweeps read, instead of digging keys
out of nested dicts three files away.

- `metrics.json`: `EvaluationResult.to_dict()`, with a `schema` version (2; files without one are version 1, the
  same layout before the accuracy section existed); read as an `EvaluationRecord`;
- `generations.jsonl`: one `Generation` a held-out prompt (the two models' answers, the reference, the judge's
  scores and verdicts where it gave them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.records import atomic_lines, read_lines

METRICS, GENERATIONS = "metrics.json", "generations.jsonl"
SCHEMA = 2  # 1: no `schema` key (before the accuracy section and this module)
Estimate = dict[str, float]  # {"value", "ci_low", "ci_high"}


@dataclass
class Generation:
    """One held-out prompt's answers, in generations.jsonl (the keys in this order; absent ones not written, and a
    file that lacks some reads with them None)."""

    prompt: str
    base_greedy: str | None = None
    dpo_greedy: str | None = None
    base_sampled: str | None = None
    dpo_sampled: str | None = None
    reference: str | None = None
    prompt_turns: list[dict[str, str]] | None = None
    judge_dpo_greedy: float | None = None
    judge_base_greedy: float | None = None
    verdict_dpo_over_base_greedy: float | None = None
    judge_dpo_sampled: float | None = None
    judge_base_sampled: float | None = None
    verdict_dpo_over_base_sampled: float | None = None
    verdict_dpo_over_reference: float | None = None
    verdict_base_over_reference: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # fields a later version added, kept as they are

    ORDER = ("prompt", "prompt_turns", "base_greedy", "dpo_greedy", "base_sampled", "dpo_sampled", "reference")

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        head = {k: values.pop(k) for k in self.ORDER}
        return {k: v for k, v in {**head, **values, **self.extra}.items() if v is not None}

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> Generation:
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in row.items() if k in names}, extra={k: v for k, v in row.items() if k not in names}
        )

    def __getitem__(self, key: str) -> Any:  # a field by its file name ("dpo_greedy"), as readers of the file ask
        return getattr(self, key) if key in self.__dataclass_fields__ else self.extra[key]

    def __contains__(self, key: str) -> bool:
        return (key in self.__dataclass_fields__ and getattr(self, key) is not None) or key in self.extra

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


def write_generations(folder: Path, rows: list[Generation]) -> Path:
    path = Path(folder) / GENERATIONS
    atomic_lines(path, [row.to_dict() for row in rows])
    return path


def read_generations(folder: Path) -> list[Generation]:
    path = Path(folder) / GENERATIONS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no generations; give an evaluation's output folder (<run>/eval)")
    return [Generation.from_dict(row) for row in read_lines(path)]


@dataclass
class EvaluationRecord:
    """An evaluation's metrics.json, read back: the figures other files use, by name."""

    raw: dict[str, Any]
    schema: int

    @classmethod
    def read(cls, folder: Path) -> EvaluationRecord:
        path = Path(folder) / METRICS
        raw = json.loads(path.read_text())
        schema = int(raw.get("schema", 1))
        if schema > SCHEMA:
            raise ValueError(f"{path}: metrics schema {schema}, newer than this version reads ({SCHEMA})")
        return cls(raw, schema)

    # -- what the file says, by name ------------------------------------------------------------------------------
    @property
    def pairs(self) -> int:
        return self.raw["pairs"]

    @property
    def warnings(self) -> list[str]:
        return list(self.raw.get("warnings") or [])

    @property
    def summary(self) -> list[dict[str, Any]]:
        return list(self.raw.get("summary") or [])

    @property
    def judge(self) -> dict[str, Any] | None:
        return self.raw.get("judge") or None

    @property
    def judge_kind(self) -> str | None:
        return (self.judge or {}).get("kind")

    @property
    def judge_model(self) -> str | None:
        return (self.judge or {}).get("model")

    def win_rate(self, kind: str = "greedy") -> dict[str, Any] | None:
        """The judge's win/tie/loss of DPO over base (`greedy`, `sampled`, `temperature_1`), or None."""
        return (self.judge or {}).get(kind) or None

    def win_rate_against_reference(self, model: str = "dpo") -> dict[str, Any] | None:
        return ((self.judge or {}).get("reference") or {}).get(model) or None

    @property
    def judge_accuracy(self) -> Estimate | None:
        return (self.judge or {}).get("accuracy_on_pairs") or None

    @property
    def kl_per_token(self) -> float | None:
        return (self.raw.get("kl") or {}).get("kl_per_token")

    def diversity(self, model: str = "dpo") -> dict[str, Any]:
        return (self.raw.get("diversity") or {}).get(model) or {}

    def share(self, key: str, model: str = "dpo") -> float | None:
        """A diversity figure's value: opening_share, phrase_share, distinct_1, distinct_2, repetition."""
        return (self.diversity(model).get(key) or {}).get("value")

    def displacement(self, side: str = "chosen") -> Estimate:
        """The held-out `side` answers' per-token log-prob change, DPO - base."""
        return self.raw["displacement"][side]["change"]

    @property
    def accuracy(self) -> dict[str, Any] | None:
        """Exact-match accuracy on held-out problems (absent where the data have no answers, and in schema 1)."""
        return self.raw.get("accuracy")
