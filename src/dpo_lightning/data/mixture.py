"""`MixtureDataModule`: several preference sets trained on as one, in set proportions.

Each source is a whole data option (`PreferenceDataModule`: its own format, path, split, field mapping, validation
source, chat template and bad-row policy), composed under `data.sources.<name>`; the mixture's own keys (lengths,
truncation, batch size, packing, streaming) apply to the pooled pairs.

In memory, the epoch is drawn once: source i gives `pairs[i]` pairs, or `weights[i]` of `size` (default: all the
sources' pairs together), by largest remainders, so the counts are exact. A source asked for fewer pairs than it has
gives a seeded sample; one asked for more repeats itself (each pass a new seeded order), and this is logged. The
pooled pairs are then shuffled per epoch like any data set (exact mid-epoch resume included). Validation is every
source's validation pairs, pooled. With `streaming`, the sources are interleaved on the fly in the same proportions
(`streaming.MixedStream`).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import torch

from .datamodule import PreferenceDataModule, check_streaming
from .formats import PreferencePair
from .streaming import SOURCE_SEED_STRIDE, MixedStream, largest_remainder

log = logging.getLogger(__name__)


def draw(pairs: list[PreferencePair], count: int, seed: int) -> list[PreferencePair]:
    """`count` of `pairs`: a seeded sample, or whole seeded passes and then a sample when count > len(pairs)."""
    out: list[PreferencePair] = []
    generator = torch.Generator().manual_seed(seed)
    while len(out) < count:
        order = torch.randperm(len(pairs), generator=generator).tolist()
        out.extend(pairs[i] for i in order[: count - len(out)])
    return out


class MixtureDataModule(PreferenceDataModule):
    def __init__(
        self,
        sources: dict[str, PreferenceDataModule],
        weights: dict[str, float] | None = None,
        pairs: dict[str, int] | None = None,
        size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.sources = dict(sources or {})
        if not self.sources:
            raise ValueError("data.sources: a mixture needs at least one source")
        if weights and pairs:
            raise ValueError("data.weights and data.pairs: give one of them (proportions or per-source counts)")
        given = dict(weights or pairs or {})
        unknown, missing = sorted(set(given) - set(self.sources)), sorted(set(self.sources) - set(given))
        if given and (unknown or missing):
            raise ValueError(
                f"data.{'weights' if weights else 'pairs'}: names must match data.sources {sorted(self.sources)}"
                f" (unknown: {unknown}, missing: {missing})"
            )
        for name, value in given.items():
            if not (isinstance(value, (int, float)) and value > 0) or (pairs and not isinstance(value, int)):
                kind = "a positive integer" if pairs else "a positive number"
                raise ValueError(f"data.{'pairs' if pairs else 'weights'}.{name} must be {kind}, got {value!r}")
        if size is not None and size < 1:
            raise ValueError(f"data.size must be a positive number of pairs, got {size}")
        if self.streaming and not given:
            raise ValueError("data.streaming with a mixture needs data.weights (the sizes are not known in advance)")
        self.weights, self.pairs, self.size = weights and dict(weights), pairs and dict(pairs), size
        for source in self.sources.values():  # the mixture decides: a streamed mixture streams every source
            source.streaming = self.streaming
            source.shuffle_buffer = self.shuffle_buffer
            if self.streaming:
                check_streaming(source)

    def load_pairs(self) -> tuple[list[PreferencePair], list[PreferencePair]]:
        loaded = {name: source.load_pairs() for name, source in self.sources.items()}
        names = list(self.sources)
        available = [len(loaded[n][0]) for n in names]
        if self.pairs:
            counts = [self.pairs[n] for n in names]
        elif self.streaming:
            counts = [0] * len(names)
        else:
            weights = [self.weights[n] for n in names] if self.weights else available
            counts = largest_remainder(weights, self.size or sum(available))
        train: list[PreferencePair] = []
        self.report["sources"] = {}
        for i, name in enumerate(names):
            pairs = [] if self.streaming else draw(loaded[name][0], counts[i], self.seed + i * SOURCE_SEED_STRIDE)
            if counts[i] > available[i] and not self.streaming:
                log.warning("source %s: %d pairs drawn from its %d (repeated)", name, counts[i], available[i])
            train.extend(pairs)
            source_report = self.sources[name].report
            drawn = {"train_available": available[i], "train_drawn": len(pairs)} if not self.streaming else {}
            self.report["sources"][name] = {
                **drawn,
                "val": len(loaded[name][1]),
                **({"weight": self.weights[name]} if self.weights else {}),
                "bad_rows": {split: source_report[split]["bad_rows"] for split in ("train", "val")},
                **({"format": source_report["format"]} if "format" in source_report else {}),
            }
        self._source_of = {id(p): n for n in names for split in loaded[n] for p in split}
        val = [p for n in names for p in loaded[n][1]]
        if not train and not self.streaming:
            raise ValueError(f"no training pairs in the sources {names}")
        return train, val[: self.max_val_pairs]

    def _tokenize(self, pairs, name):
        kept_pairs, tokens = super()._tokenize(pairs, name)
        index = {name: i for i, name in enumerate(self.sources)}
        for pair, token in zip(kept_pairs, tokens):
            token.source = index[self._source_of[id(pair)]]
        by_source = Counter(self._source_of[id(pair)] for pair in kept_pairs)
        for source, count in by_source.items():
            self.report["sources"].setdefault(source, {})[f"{name}_pairs"] = count
        return kept_pairs, tokens

    @property
    def source_names(self) -> list[str]:
        """In the order of `TokenizedPair.source`: validation metrics are also logged per source under these."""
        return list(self.sources)

    def train_stream(self) -> MixedStream:
        """Every source's stream (its own seeds), interleaved by `weights` (or `pairs`, as proportions)."""
        weights = self.weights or self.pairs
        streams = [
            source.source_stream(self.pair_tokenizer, self.seed + i * SOURCE_SEED_STRIDE)
            for i, source in enumerate(self.sources.values())
        ]
        return MixedStream(streams, [float(weights[name]) for name in self.sources], self.seed)
