"""`PairSource`: one set of preference pairs, where it is and how to read it. A data module holds a list of them
(one for `data=builtin|hh|shp|jsonl|preference`, several for `data=mixture`).

A source reads its training rows from `path` (a local file or folder, `builtin:<split>`, or a Hub dataset at
`split`) and its validation rows from `val_path`, else from `path` at `val_split` for a Hub set, else from a
held-out `val_fraction` of its training rows, chosen by a fixed permutation (`split_seed`), so the split never
changes between runs. Bad rows stop the run with their file, line and field (`on_bad_row=error`)
or are skipped and counted (`skip`). With `chat_template`, text pairs are rendered as chat turns. `weight` (a share
of the mixture) or `pairs` (an exact count) say how much of the source an epoch draws.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .formats import PairFormat, PreferencePair
from .readers import BUILTIN_PREFIX, BadRows, check_data_path, is_local, iter_rows
from .streaming import SourceStream
from .tokenize import PairTokenizer, TokenizedPair


def validation_source(path: str, val_path: str | None, val_split: str | None) -> tuple[str, str] | None:
    """Where validation pairs come from: (`val_path`, its split); the hub dataset `path` at `val_split`; or None,
    meaning a held-out fraction of the training rows."""
    if val_path:
        return str(val_path), val_split or "test"
    if val_split and not path.startswith(BUILTIN_PREFIX) and not is_local(path):
        return path, val_split
    return None


@dataclass
class PairSource:
    format: PairFormat
    path: str
    split: str = "train"
    subset: str | None = None
    data_dir: str | None = None
    val_path: str | None = None
    val_split: str | None = None
    on_bad_row: str = "error"
    chat_template: bool | str = False  # or "auto": decided for the tokenizer and the prompts (decide_chat_template)
    val_fraction: float = 0.05
    split_seed: int = 0
    name: str = "data"
    weight: float | None = None
    pairs: int | None = None

    def __post_init__(self) -> None:
        # Every setting is checked here, before anything loads (the config check builds the data module to run them).
        if not self.path:
            key = "data.path" if self.name == "data" else f"data.sources.{self.name}.path"
            raise ValueError(f"{key} is required: the file, folder or Hub id of the pairs ({key}=/path/to/pairs.jsonl)")
        if self.format is None:
            raise ValueError(f"data source {self.name!r} needs a format (data.format)")
        self.path = str(self.path)
        check_data_path("path", self.path)
        check_data_path("val_path", self.val_path)
        BadRows(self.on_bad_row)
        if self.chat_template not in (True, False, "auto"):
            raise ValueError(f"data.chat_template must be true, false or auto, got {self.chat_template!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")

    @property
    def validation(self) -> tuple[str, str] | None:
        return validation_source(self.path, self.val_path, self.val_split)

    def held_out_split(self, pairs: list[PreferencePair]) -> tuple[list[PreferencePair], list[PreferencePair]]:
        n_val = max(1, math.ceil(len(pairs) * self.val_fraction)) if len(pairs) > 1 else 0
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        held = set(order[:n_val])
        return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]

    def read(self, path: str, split: str, bad_rows: BadRows) -> list[PreferencePair]:
        pairs = self.format.load(iter_rows(path, split, self.subset, self.data_dir), bad_rows)
        return [self.as_configured(p) for p in pairs]

    def as_configured(self, pair: PreferencePair) -> PreferencePair:
        """The pair as this source renders it: as chat turns with `chat_template` (each source of a mixture its own)."""
        return pair.as_chat() if self.chat_template is True else pair

    def decide_chat_template(self, tokenizer: Any, pairs: list[PreferencePair]) -> str:
        """`chat_template: auto`, settled (to true or false) for this tokenizer and these pairs: plain-text prompts
        are wrapped as user/assistant turns when the tokenizer has a chat template and no prompt is already
        formatted as a dialogue ("Human: ... Assistant:", or the template's own special tokens). Returns the line
        that says what was decided and how to choose otherwise."""
        text = [p.prompt for p in pairs[:200] if isinstance(p.prompt, str)]
        formatted = next((t for t in text if looks_formatted(t, tokenizer)), None)
        has_template = bool(getattr(tokenizer, "chat_template", None))
        self.chat_template = has_template and formatted is None and bool(text)
        if self.chat_template:
            return (
                "data.chat_template=auto: plain-text prompts wrapped as user/assistant turns of the tokenizer's chat "
                "template (data.chat_template=false: as given, prompt and response joined with nothing between)"
            )
        why = (
            "the rows are chat messages, rendered with the chat template"
            if not text
            else "the tokenizer has no chat template"
            if not has_template
            else f"prompts are already a dialogue ({formatted[:60]!r}...)"
        )
        return f"data.chat_template=auto: prompts as given ({why}; data.chat_template=true wraps them)"

    def stream(self, pair_tokenizer: PairTokenizer, shuffle_buffer: int, seed: int) -> SourceStream:
        """The training pairs as a stream, parsed (bad rows as `on_bad_row` says) and tokenized on the fly."""
        bad_rows = BadRows(self.on_bad_row)

        def to_pair(where: str, row: Any) -> TokenizedPair | None:
            pair = self.format.parse_row(where, row, bad_rows)
            return None if pair is None else pair_tokenizer(self.as_configured(pair))

        rows: Callable[[], Any] = lambda: iter_rows(  # noqa: E731
            self.path, self.split, self.subset, self.data_dir, streaming=True
        )
        return SourceStream(rows, to_pair, shuffle_buffer, seed)


DIALOGUE = re.compile(r"(^|\n)\s*(human|user|assistant|system|question|answer)\s*:", re.IGNORECASE)


def looks_formatted(prompt: str, tokenizer: Any) -> bool:
    """A text prompt already laid out as a dialogue: role lines ("Human:", "Assistant:") or the tokenizer's own
    special tokens (e.g. "<|im_start|>")."""
    specials = [t for t in getattr(tokenizer, "all_special_tokens", []) if len(t) > 2]
    return bool(DIALOGUE.search(prompt)) or any(t in prompt for t in specials)


def check_sources(sources: list[PairSource], size: int | None) -> None:
    """A mixture's names and amounts: names unique; weights (with size) or pairs, for every source or none."""
    if not sources:
        raise ValueError("data.sources: a data module needs at least one source")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"data.sources: source names must be unique, got {names}")
    weighted = [s.name for s in sources if s.weight is not None]
    counted = [s.name for s in sources if s.pairs is not None]
    if weighted and counted:
        raise ValueError("data.weights and data.pairs: give one of them (proportions or per-source counts)")
    for given, key in ((weighted, "weights"), (counted, "pairs")):
        if given and len(given) != len(sources):
            missing = sorted(set(names) - set(given))
            raise ValueError(f"data.{key}: names must match data.sources {sorted(names)} (missing: {missing})")
    for s in sources:
        if s.weight is not None and not (isinstance(s.weight, (int, float)) and s.weight > 0):
            raise ValueError(f"data.weights.{s.name} must be a positive number, got {s.weight!r}")
        if s.pairs is not None and not (isinstance(s.pairs, int) and s.pairs > 0):
            raise ValueError(f"data.pairs.{s.name} must be a positive integer, got {s.pairs!r}")
    if size is not None and size < 1:
        raise ValueError(f"data.size must be a positive number of pairs, got {size}")


def check_streaming(sources: list[PairSource], num_workers: int, max_train_pairs: int | None) -> None:
    """What streaming needs: a validation source of each source's own (a held-out fraction needs the whole set), no
    worker processes (the stream is read in this process), no cap over the whole set, and a mixture's weights."""
    for source in sources:
        if source.format.reads_whole_set:
            raise ValueError(
                f"data.streaming: {type(source.format).__name__} ({source.path}) pairs each row with another row's "
                "completion across the whole set (KTO's reference point): set data.streaming=false"
            )
        if not source.validation:
            raise ValueError(
                f"data.streaming: {source.path} needs a validation source (data.val_path, or data.val_split of a Hub "
                "set): a held-out fraction needs the whole set in memory"
            )
    if num_workers:
        raise ValueError("data.streaming reads in the training process: set data.num_workers=0")
    if max_train_pairs:
        raise ValueError("data.max_train_pairs needs the whole set: with data.streaming, set trainer.max_steps")
    if len(sources) > 1 and all(s.weight is None and s.pairs is None for s in sources):
        raise ValueError("data.streaming with a mixture needs data.weights (the sizes are not known in advance)")
