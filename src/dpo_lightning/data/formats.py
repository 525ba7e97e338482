"""Raw rows -> `PreferencePair`: TRL's preference format (text or chat messages), Anthropic HH, Stanford SHP.

Rows come from `readers` with their origin, so every error names the file, the line and the field (hub datasets:
the dataset, split and row).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .readers import BadRows, DataError, Row

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass
class PreferencePair:
    """One preference: a prompt and two responses. Text, or chat messages to render with a chat template."""

    prompt: str | Messages
    chosen: str | Messages
    rejected: str | Messages
    group: str | None = None  # e.g. the SHP post id, for capping pairs per prompt
    where: str = ""  # file:line (or dataset[split]:row) the pair came from
    columns: dict[str, Any] = field(default_factory=dict)  # the row's other fields (a problem's `answer`), for judges
    # An unpaired row (KTO; `unpaired.py`): True desirable, False undesirable. `chosen` is then its completion and
    # `rejected` another row's completion for this prompt, from which KTO estimates its reference point.
    label: bool | None = None

    @property
    def is_chat(self) -> bool:
        return isinstance(self.chosen, list)

    def as_chat(self) -> PreferencePair:
        """The pair as chat messages (text prompt -> a user turn, text response -> an assistant turn), so the
        tokenizer renders it with its chat template (`data.chat_template=true`)."""
        if self.is_chat:
            return self
        return PreferencePair(
            [{"role": "user", "content": self.prompt}] if isinstance(self.prompt, str) else self.prompt,
            [{"role": "assistant", "content": self.chosen}],
            [{"role": "assistant", "content": self.rejected}],
            self.group,
            self.where,
            self.columns,
            self.label,
        )


def _text(row: dict[str, Any], name: str, where: str) -> str:
    if name not in row:
        raise DataError(where, name, f"missing (the row has {sorted(row)})", "missing_field")
    value = row[name]
    if value is None:  # a null in a columnar file (parquet, CSV: an empty cell)
        raise DataError(where, name, "empty (null)", "empty_value")
    if not isinstance(value, str):
        raise DataError(where, name, f"expected a string, got {type(value).__name__}", "wrong_type")
    if not value.strip():
        raise DataError(where, name, "empty", "empty_value")
    return value


def _messages(value: Any, name: str, where: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise DataError(where, name, "expected a non-empty list of chat messages", "wrong_type")
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(where, f"{name}[{i}]", "a chat message needs string 'role' and 'content'", "wrong_type")
    return value


class PairFormat:
    """Turns one raw row into a `PreferencePair` (or None for a row the format deliberately leaves out)."""

    reads_whole_set = False  # its `select` or `load` needs every row at once (so it cannot stream)

    def parse(self, row: dict[str, Any], where: str) -> PreferencePair | None:
        raise NotImplementedError

    def select(self, pairs: list[PreferencePair]) -> list[PreferencePair]:
        """Dataset-level selection after parsing (default: keep all)."""
        return pairs

    def parse_row(self, where: str, row: dict[str, Any] | DataError, bad_rows: BadRows) -> PreferencePair | None:
        """One row as a pair; a bad one (or a reader's `DataError` in its place) goes to `bad_rows`, which raises
        or counts it (then None, as for a row the format leaves out). Loading and streaming both read rows here."""
        try:
            if isinstance(row, DataError):
                raise row
            return self.parse(row, where)
        except DataError as error:
            bad_rows.handle(error)
            return None

    def load(self, rows: Iterable[Row], bad_rows: BadRows | None = None) -> list[PreferencePair]:
        bad_rows = bad_rows or BadRows("error")
        pairs = [self.parse_row(where, row, bad_rows) for where, row in rows]
        return self.select([p for p in pairs if p is not None])


@dataclass
class PreferenceFormat(PairFormat):
    """TRL's preference format, standard (text) or conversational (chat message lists), with an explicit or an
    implicit prompt. Field names are mappable.

    - Explicit prompt: `prompt` holds the text (or the conversation so far), `chosen`/`rejected` the responses.
    - Implicit prompt (no prompt field, or null): `chosen` and `rejected` are whole texts or conversations and what
      they share at the start is the prompt: their shared leading messages, or for text their common prefix cut
      at its last whitespace (no word is split: "The sky is blue." / "The sky is green." -> "The sky is").
    - Conversations that repeat the prompt (ultrafeedback-binarized style: a string `prompt` and `chosen` = the user
      turn + the answer): the shared leading messages are the prompt, and the `prompt` field must agree with them.
    """

    prompt_field: str = "prompt"
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"

    def parse(self, row: dict[str, Any], where: str) -> PreferencePair:
        chosen = row.get(self.chosen_field)
        pair = self._parse_chat(row, where) if isinstance(chosen, list) else self._parse_text(row, where)
        if pair.chosen == pair.rejected:
            message = "identical to chosen (the pair carries no preference)"
            raise DataError(where, self.rejected_field, message, "identical_responses")
        own = (self.prompt_field, self.chosen_field, self.rejected_field)
        pair.columns = {k: v for k, v in row.items() if k not in own}  # e.g. an `answer` a reward function reads
        return pair

    def _parse_text(self, row: dict[str, Any], where: str) -> PreferencePair:
        chosen, rejected = _text(row, self.chosen_field, where), _text(row, self.rejected_field, where)
        if row.get(self.prompt_field) is not None:
            return PreferencePair(_text(row, self.prompt_field, where), chosen, rejected, where=where)
        common = 0
        for a, b in zip(chosen, rejected):
            if a != b:
                break
            common += 1
        cut = max(chosen.rfind(" ", 0, common + 1), chosen.rfind("\n", 0, common + 1))
        if cut <= 0:
            raise DataError(
                where, self.prompt_field, "missing, and chosen/rejected share no leading words", "missing_field"
            )
        return PreferencePair(chosen[:cut], chosen[cut:], rejected[cut:], where=where)

    def _parse_chat(self, row: dict[str, Any], where: str) -> PreferencePair:
        chosen = _messages(row.get(self.chosen_field), self.chosen_field, where)
        rejected = _messages(row.get(self.rejected_field), self.rejected_field, where)
        shared = 0
        while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
            shared += 1
        given = row.get(self.prompt_field)
        if given is not None:
            given = [{"role": "user", "content": given}] if isinstance(given, str) else given
            given = _messages(given, self.prompt_field, where)
            if shared == 0:  # the explicit form: the prompt is not repeated in the responses
                return PreferencePair(prompt=given, chosen=chosen, rejected=rejected, where=where)
            if [(m["role"], m["content"]) for m in given] != [(m["role"], m["content"]) for m in chosen[:shared]]:
                raise DataError(
                    where,
                    self.prompt_field,
                    f"differs from the {shared} message(s) that chosen and rejected start with",
                    "prompt_mismatch",
                )
        elif shared == 0:
            raise DataError(
                where, self.prompt_field, "missing, and chosen/rejected share no leading messages", "missing_field"
            )
        return PreferencePair(chosen[:shared], chosen[shared:], rejected[shared:], where=where)


@dataclass
class HHFormat(PairFormat):
    """Anthropic HH-RLHF: `chosen` and `rejected` are whole dialogues; the prompt is the text through the last
    `\\n\\nAssistant:` of chosen, which rejected normally shares. Where it does not (in harmless-base/test, 4 of
    2,312 pairs: the chosen response itself contains another Assistant turn), `on_prompt_mismatch` decides:
    `resplit` (default) cuts both at the last `\\n\\nAssistant:` inside their common prefix, `skip` drops the pair,
    `error` raises naming the line. Every resplit or skip is counted (`counts`) and logged."""

    on_prompt_mismatch: str = "resplit"
    marker: str = "\n\nAssistant:"
    counts: Counter = field(default_factory=Counter, repr=False)

    def __post_init__(self) -> None:
        if self.on_prompt_mismatch not in ("resplit", "skip", "error"):
            raise ValueError(
                f"data.format.on_prompt_mismatch must be resplit|skip|error, got {self.on_prompt_mismatch!r}"
            )

    def load(self, rows: Iterable[Row], bad_rows: BadRows | None = None) -> list[PreferencePair]:
        self.counts = Counter()
        pairs = super().load(rows, bad_rows)
        if +self.counts:
            log.warning("HH pairs handled deliberately: %s", dict(+self.counts))
        return pairs

    def parse(self, row: dict[str, Any], where: str) -> PreferencePair | None:
        chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
        cut = chosen.rfind(self.marker)
        if cut < 0:
            raise DataError(where, "chosen", f"no {self.marker!r} turn", "no_assistant_turn")
        prompt = chosen[: cut + len(self.marker)]
        if not rejected.startswith(prompt):
            if self.on_prompt_mismatch == "error":
                raise DataError(
                    where,
                    "rejected",
                    "does not start with the prompt of chosen (text through its last Assistant turn)",
                    "prompt_mismatch",
                )
            if self.on_prompt_mismatch == "skip":
                self.counts["skipped"] += 1
                return None
            prompt = self._shared_prompt(chosen, rejected, where)
            self.counts["resplit"] += 1
        pair = PreferencePair(prompt, chosen[len(prompt) :], rejected[len(prompt) :], where=where)
        # A blank response is real HH data (4 chosen ones in harmless-base/test): the preferred behaviour was
        # to say nothing. It is kept as a response of just EOS, and counted.
        self.counts["blank_response"] += (not pair.chosen.strip()) + (not pair.rejected.strip())
        if pair.chosen == pair.rejected:
            raise DataError(
                where, "rejected", "identical to chosen (the pair carries no preference)", "identical_responses"
            )
        return pair

    def _shared_prompt(self, chosen: str, rejected: str, where: str) -> str:
        common = 0
        for a, b in zip(chosen, rejected):
            if a != b:
                break
            common += 1
        cut = chosen.rfind(self.marker, 0, common)
        if cut < 0:
            raise DataError(where, "rejected", "shares no Assistant turn with chosen", "prompt_mismatch")
        return chosen[: cut + len(self.marker)]


@dataclass
class SHPFormat(PairFormat):
    """Stanford SHP: `labels` = 1 when A is preferred. Keeps pairs with score_ratio >= `min_score_ratio`
    (the SHP authors' advice: 2) and at most `max_pairs_per_post` pairs per post (null: no cap).
    The prompt is the post rendered as an HH-style dialogue turn, as in the DPO authors' code."""

    min_score_ratio: float = 2.0
    max_pairs_per_post: int | None = None

    def parse(self, row: dict[str, Any], where: str) -> PreferencePair | None:
        for name in ("history", "human_ref_A", "human_ref_B"):
            _text(row, name, where)
        if row.get("labels") not in (0, 1):
            raise DataError(where, "labels", f"expected 0 or 1, got {row.get('labels')!r}", "wrong_type")
        ratio = row.get("score_ratio")
        if ratio is None:
            a, b = row.get("score_A"), row.get("score_B")
            if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
                raise DataError(where, "score_ratio", "missing, and score_A/score_B are not numbers", "missing_field")
            ratio = max(a, b) / max(min(a, b), 1)
        if float(ratio) < self.min_score_ratio:
            return None
        a, b = " " + row["human_ref_A"], " " + row["human_ref_B"]
        chosen, rejected = (a, b) if row["labels"] == 1 else (b, a)
        return PreferencePair(
            "\n\nHuman: " + row["history"] + "\n\nAssistant:", chosen, rejected, group=row.get("post_id"), where=where
        )

    def select(self, pairs: list[PreferencePair]) -> list[PreferencePair]:
        if self.max_pairs_per_post is None:
            return pairs
        seen: Counter = Counter()
        kept = []
        for pair in pairs:
            seen[pair.group] += 1
            if pair.group is None or seen[pair.group] <= self.max_pairs_per_post:
                kept.append(pair)
        return kept
