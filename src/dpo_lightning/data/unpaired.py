"""Unpaired feedback for KTO: TRL's unpaired format `{prompt, completion, label}` (thumbs up or down on one answer),
or a preference set split into unpaired rows (chosen -> desirable, rejected -> undesirable).

Each row becomes a `PreferencePair` with its `label`: `chosen` is its completion, and `rejected` is the completion of
another row, for a different prompt where there is one. That mismatched (prompt, completion) is what KTO's
reference point z0 is estimated from (Ethayarajh et al. 2024, as TRL's KTOTrainer does by shifting completions
within a batch); here the assignment is a fixed derangement of the whole set, so it does not depend on batching,
is the same on every rank and in every epoch, and the packed layout computes the prompt once for both."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .formats import PairFormat, PreferenceFormat, PreferencePair, _messages, _text
from .readers import BadRows, DataError, Row

LABEL_WORDS = {"true": True, "false": False, "1": True, "0": False}


def parse_label(value: Any, name: str, where: str) -> bool:
    """A row's label: a boolean, 0/1, or the words true/false (CSV cells), else an error naming the field."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in LABEL_WORDS:
        return LABEL_WORDS[value.strip().lower()]
    shown = "missing" if value is None else f"{value!r}"
    raise DataError(where, name, f"expected true or false (desirable or not), got {shown}", "wrong_type")


def assign_mismatched(rows: list[PreferencePair], seed: int = 0) -> list[PreferencePair]:
    """Give each row, as its `rejected`, another row's completion: a seeded shuffle rotated by one (a derangement,
    every completion used once), with targets swapped where a row would get its own prompt's completion (kept
    only when every row has the same prompt). Needs two rows or more."""
    if len(rows) < 2:
        where = rows[0].where if rows else ""
        raise DataError(where, None, "KTO needs at least 2 rows (the reference point uses other rows' completions)")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    target = {i: order[(k + 1) % len(order)] for k, i in enumerate(order)}
    prompt = [repr(row.prompt) for row in rows]
    for i in order:
        if prompt[target[i]] != prompt[i]:
            continue
        swap = next((j for j in order if prompt[target[j]] != prompt[i] and prompt[target[i]] != prompt[j]), None)
        if swap is not None:
            target[i], target[swap] = target[swap], target[i]
    completions = [row.chosen for row in rows]
    for i, row in enumerate(rows):
        row.rejected = completions[target[i]]
    return rows


@dataclass
class UnpairedFormat(PairFormat):
    """TRL's unpaired format, standard (text) or conversational (message lists): a prompt, one completion and a
    boolean label. Field names are mappable; `seed` fixes which other row's completion each row is paired with."""

    prompt_field: str = "prompt"
    completion_field: str = "completion"
    label_field: str = "label"
    seed: int = 0
    reads_whole_set = True

    def parse(self, row: dict[str, Any], where: str) -> PreferencePair:
        completion = row.get(self.completion_field)
        if isinstance(completion, list):
            prompt = row.get(self.prompt_field)
            prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            prompt = _messages(prompt, self.prompt_field, where)
            completion = _messages(completion, self.completion_field, where)
        else:
            prompt = _text(row, self.prompt_field, where)
            completion = _text(row, self.completion_field, where)
        label = parse_label(row.get(self.label_field), self.label_field, where)
        own = (self.prompt_field, self.completion_field, self.label_field)
        columns = {k: v for k, v in row.items() if k not in own}
        return PreferencePair(prompt, completion, completion, where=where, columns=columns, label=label)

    def select(self, pairs: list[PreferencePair]) -> list[PreferencePair]:
        return assign_mismatched(pairs, self.seed)


@dataclass
class UnpairedFromPairs(PairFormat):
    """A preference set as unpaired rows: each pair's chosen answer a desirable row, its rejected one an
    undesirable row (as TRL's `unpair_preference_dataset`). `pairs` is the set's own format (default TRL's)."""

    pairs: PairFormat = field(default_factory=PreferenceFormat)
    seed: int = 0
    reads_whole_set = True

    def parse(self, row: dict[str, Any], where: str) -> PreferencePair | None:
        raise DataError(where, None, "a preference set split into unpaired rows is read whole: not with streaming")

    def load(self, rows: Iterable[Row], bad_rows: BadRows | None = None) -> list[PreferencePair]:
        unpaired = []
        for pair in self.pairs.load(rows, bad_rows):
            for completion, label in ((pair.chosen, True), (pair.rejected, False)):
                unpaired.append(
                    PreferencePair(pair.prompt, completion, completion, pair.group, pair.where, pair.columns, label)
                )
        return assign_mismatched(unpaired, self.seed)


__all__ = ["UnpairedFormat", "UnpairedFromPairs", "assign_mismatched", "parse_label"]
