"""`PreferenceDataModule`: the pairs of one or more `PairSource`s (a single source is a mixture of one), split,
tokenized once and batched; or, with `streaming`, read and tokenized on the fly (`streaming.py`).

An epoch draws from each source its `pairs`, or its `weight` of `size` (default: all the sources' pairs together),
by largest remainders, so the counts are exact. A source asked for fewer pairs than it has gives a seeded sample;
one asked for more repeats itself (each pass a new seeded order), and this is logged. The drawn pairs are shuffled
per epoch with the seed (exact mid-epoch resume included). Validation is every source's validation pairs, pooled:
its own `val_path` or Hub `val_split`, else a deterministic held-out `val_fraction` of its training rows. With
`streaming`, the sources are interleaved on the fly in the same proportions.

What was skipped, truncated or dropped is logged and, with `report_path`, saved as JSON (`data_report.json`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from ..core import seeds
from .collate import PackedPairCollator, PairCollator
from .formats import PreferencePair
from .readers import BadRows
from .resumable import ResumableLoader
from .sources import PairSource, check_sources, check_streaming
from .streaming import MixedStream, StreamingLoader, largest_remainder
from .tokenize import PairTokenizer, TokenizedPair, check_truncation, pad_token_id

log = logging.getLogger(__name__)
FEW_VALIDATION_PAIRS = 20  # below this, the validation figures are too coarse to compare runs by


def draw(pairs: list[Any], count: int, seed: int) -> list[Any]:
    """`count` of `pairs`: a seeded sample, or whole seeded passes and then a sample when count > len(pairs)."""
    out: list[Any] = []
    generator = torch.Generator().manual_seed(seed)
    while len(out) < count:
        order = torch.randperm(len(pairs), generator=generator).tolist()
        out.extend(pairs[i] for i in order[: count - len(out)])
    return out


class PreferenceDataModule(LightningDataModule):
    def __init__(
        self,
        sources: PairSource | list[PairSource],
        tokenizer: Any = None,
        size: int | None = None,
        max_train_pairs: int | None = None,
        max_val_pairs: int | None = None,
        max_length: int = 512,
        max_prompt_length: int = 256,
        truncation_mode: str = "keep_end",
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 42,
        report_path: str | None = None,
        packing: bool = True,
        streaming: bool = False,
        shuffle_buffer: int = 10_000,
    ) -> None:
        super().__init__()
        self.sources = [sources] if isinstance(sources, PairSource) else list(sources)
        # Every setting is checked here, before anything loads (the config check builds this object to run them).
        check_sources(self.sources, size)
        check_truncation(max_length, max_prompt_length, truncation_mode)
        if shuffle_buffer < 1:
            raise ValueError(f"data.shuffle_buffer must be >= 1 (pairs shuffled together), got {shuffle_buffer}")
        self.size = size
        self.max_train_pairs, self.max_val_pairs = max_train_pairs, max_val_pairs
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed, self.report_path = num_workers, seed, report_path
        self.packing, self.streaming, self.shuffle_buffer = packing, streaming, shuffle_buffer
        if streaming:
            check_streaming(self.sources, num_workers, max_train_pairs)
        self.lengths = (max_length, max_prompt_length, truncation_mode)
        self.tokenizer, self.pair_tokenizer = None, None
        if tokenizer is not None:
            self.use_tokenizer(tokenizer)
        self._read: tuple[list, list] | None = None  # the pairs read by `read()`, before any tokenizer
        self.report: dict[str, Any] = {}
        self.train_pairs: list[PreferencePair] = []
        self.val_pairs: list[PreferencePair] = []
        self.train_tokens: list[TokenizedPair] = []
        self.val_tokens: list[TokenizedPair] = []
        # Where the training data stands, for an exact resume (saved in checkpoints by `state_dict`):
        self._train_loader: ResumableLoader | StreamingLoader | None = None
        self._resume_position: dict[str, Any] | None = None  # from a checkpoint, until the loader exists
        self._stream_position: dict[str, Any] | None = None  # the stream position of the batch last trained on

    @property
    def source_names(self) -> list[str]:
        """In the order of `TokenizedPair.source`: validation metrics are also logged per source under these."""
        return [s.name for s in self.sources]

    @property
    def mixed(self) -> bool:
        return len(self.sources) > 1

    def use_tokenizer(self, tokenizer: Any) -> None:
        """The model's tokenizer (train.py reads the data first, so a bad row fails before the model loads)."""
        self.tokenizer = tokenizer
        self.pair_tokenizer = PairTokenizer(tokenizer, *self.lengths)

    # -- loading -------------------------------------------------------------------------------------------
    def read(self) -> None:
        """Read and check every row now (training rows too, unless streaming), with no tokenizer: a bad row stops
        the run here, in seconds, naming its file, line and field. `setup` tokenizes what was read."""
        if self._read is None:
            self._read = self.load_pairs()
            train, val = self._read
            what = "streamed as training goes" if self.streaming else f"{len(train)} training pairs"
            log.info("data: %s and %d validation pairs read and checked", what, len(val))
            if 0 < len(val) < FEW_VALIDATION_PAIRS:
                log.warning(
                    "data: only %d validation pairs: every val/ figure (accuracy, margins, the sweep summary's) moves "
                    "in steps of 1/%d; give held-out pairs with data.val_path=<file>, or a larger data.val_fraction",
                    len(val),
                    len(val),
                )

    def load_pairs(self) -> tuple[list[tuple[PreferencePair, int]], list[tuple[PreferencePair, int]]]:
        """Training and validation pairs, each with its source's index (training: none when streaming)."""
        loaded = [self._load_source(s) for s in self.sources]
        counts = self._counts([len(train) for train, _ in loaded])
        train: list[tuple[PreferencePair, int]] = []
        for i, (source, (pairs, val)) in enumerate(zip(self.sources, loaded)):
            drawn = pairs if counts is None else draw(pairs, counts[i], seeds.mixture_source(self.seed, i))
            if counts is not None and counts[i] > len(pairs) and not self.streaming:
                log.warning("source %s: %d pairs drawn from its %d (repeated)", source.name, counts[i], len(pairs))
            train.extend((p, i) for p in drawn)
            if self.mixed:
                entry = self.report.setdefault("sources", {}).setdefault(source.name, {})
                if not self.streaming:
                    entry.update(train_available=len(pairs), train_drawn=len(drawn))
                entry.update(val=len(val), **({"weight": source.weight} if source.weight is not None else {}))
        if not train and not self.streaming:
            raise ValueError(f"no training pairs in {', '.join(s.path for s in self.sources)}")
        val = [(p, i) for i, (_, pairs) in enumerate(loaded) for p in pairs]
        return train[: self.max_train_pairs], val[: self.max_val_pairs]

    def _load_source(self, source: PairSource) -> tuple[list[PreferencePair], list[PreferencePair]]:
        """One source's training and validation pairs, bad rows handled and reported."""
        bad = {"train": BadRows(source.on_bad_row), "val": BadRows(source.on_bad_row)}
        train = [] if self.streaming else source.read(source.path, source.split, bad["train"])
        validation = source.validation
        train, val = (train, source.read(*validation, bad["val"])) if validation else source.held_out_split(train)
        report = self.report.setdefault("sources", {}).setdefault(source.name, {}) if self.mixed else self.report
        for split, rows in bad.items():
            summary = {"bad_rows": rows.summary()}
            if self.mixed:
                report.setdefault("bad_rows", {})[split] = summary["bad_rows"]
            else:
                report.setdefault(split, {}).update(summary)
            if rows.counts:
                first = [e for examples in rows.examples.values() for e in examples][:3]
                log.warning(
                    "%s %s: skipped %d bad rows %s; first: %s",
                    source.name,
                    split,
                    sum(rows.counts.values()),
                    dict(rows.counts),
                    first,
                )
        if getattr(source.format, "counts", None):
            report["format"] = dict(+source.format.counts)
        return train, val

    def _counts(self, available: list[int]) -> list[int] | None:
        """Pairs drawn from each source per epoch (None: all of a single source, in file order)."""
        if self.streaming:
            return [0] * len(self.sources)
        if any(s.pairs is not None for s in self.sources):
            return [s.pairs for s in self.sources]
        if not self.mixed and self.size is None:
            return None
        weights = [s.weight for s in self.sources] if self.sources[0].weight is not None else available
        return largest_remainder(weights, self.size or sum(available))

    def setup(self, stage: str | None = None) -> None:
        if self.train_tokens:
            return
        if self.pair_tokenizer is None:
            raise ValueError("PreferenceDataModule needs a tokenizer (train.py passes the model's)")
        train, val = self._read if self._read is not None else self.load_pairs()
        self._read = None
        self._decide_chat_templates(train + val)
        train, val = self._rendered(train), self._rendered(val)
        if self.streaming:  # read, tokenized and counted as the stream goes
            self.report.setdefault("train", {}).update(streaming=True, shuffle_buffer=self.shuffle_buffer)
        else:
            self.train_pairs, self.train_tokens = self._tokenize(train, "train")
        self.val_pairs, self.val_tokens = self._tokenize(val, "val")
        if self.report_path:
            Path(self.report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.report_path).write_text(json.dumps(self.report, indent=2) + "\n")

    def _decide_chat_templates(self, pairs: list[tuple[PreferencePair, int]]) -> None:
        """Each source with `chat_template: auto` settles it for this tokenizer and its pairs (logged, reported)."""
        for i, source in enumerate(self.sources):
            if source.chat_template == "auto":
                line = source.decide_chat_template(self.tokenizer, [p for p, at in pairs if at == i])
                log.info("%s: %s", source.name, line)
                self.report.setdefault("chat_template", {})[source.name] = source.chat_template

    def _rendered(self, pairs: list[tuple[PreferencePair, int]]) -> list[tuple[PreferencePair, int]]:
        """Text pairs as chat turns for the sources that render them so (`data.chat_template`)."""
        wrap = [s.chat_template is True for s in self.sources]
        return [(pair.as_chat() if wrap[at] else pair, at) for pair, at in pairs]

    def _tokenize(self, pairs: list[tuple[PreferencePair, int]], name: str):
        """Token ids of every pair, labelled with its source; pairs dropped as over-long leave both lists."""
        kept = []
        for pair, source in pairs:
            tokens = self.pair_tokenizer(pair)
            if tokens is not None:
                tokens.source = source
                kept.append((pair, tokens))
        truncated, dropped = sum(t.truncated for _, t in kept), len(pairs) - len(kept)
        log.info("%s: %d pairs (%d truncated, %d dropped as over-long)", name, len(kept), truncated, dropped)
        self.report.setdefault(name, {}).update(pairs=len(kept), truncated=truncated, dropped_overlong=dropped)
        labels = [t.label for _, t in kept if t.label is not None]
        if labels:  # unpaired rows (KTO): how many of each, for the loss's advice on their balance
            self.report[name]["labels"] = {"desirable": sum(labels), "undesirable": len(labels) - sum(labels)}
        if self.mixed:
            for i, source in enumerate(self.sources):
                entry = self.report["sources"].setdefault(source.name, {})
                entry[f"{name}_pairs"] = sum(t.source == i for _, t in kept)
        return [p for p, _ in kept], [t for _, t in kept]

    @property
    def label_counts(self) -> dict[str, int] | None:
        """The training rows' labels, {desirable, undesirable}, for unpaired data (KTO); None for preference pairs."""
        return self.report.get("train", {}).get("labels")

    def train_stream(self) -> MixedStream:
        """Every source's stream (its own seeds), interleaved by weight (or pairs, as proportions)."""
        streams = [
            s.stream(self.pair_tokenizer, self.shuffle_buffer, seeds.mixture_source(self.seed, i))
            for i, s in enumerate(self.sources)
        ]
        weights = [float(s.weight if s.weight is not None else s.pairs or 1.0) for s in self.sources]
        return MixedStream(streams, weights, self.seed)

    # -- loaders -------------------------------------------------------------------------------------------
    @property
    def collator(self) -> PairCollator | PackedPairCollator:
        """Packed (prompt once, several pairs per row) with `packing`, else the textbook chosen/rejected rows."""
        pad = pad_token_id(self.tokenizer)
        return PackedPairCollator(pad_token_id=pad) if self.packing else PairCollator(pad_token_id=pad)

    def train_dataloader(self) -> DataLoader | StreamingLoader:
        rank, world = self._rank_and_world()
        if self.streaming:
            self._train_loader = StreamingLoader(self.train_stream(), self.batch_size, self.collator, rank, world)
        else:
            self._train_loader = ResumableLoader(
                self.train_tokens,
                batch_size=self.batch_size,
                seed=self.seed,
                rank=rank,
                world_size=world,
                collate_fn=self.collator,
                num_workers=self.num_workers,
            )
        if self._resume_position:
            self._train_loader.resume_at(self._resume_position)
            self._resume_position = None
        return self._train_loader

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: where the training data stands, for an exact mid-epoch resume."""
        loader = self._train_loader
        if isinstance(loader, StreamingLoader):
            return {"train_position": self._stream_position or loader.start}
        return {"train_position": loader.position()} if loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        position = state_dict.get("train_position")
        if position and self._train_loader is not None:  # made before the restore: strategies that restore after
            self._train_loader.resume_at(position)  # their setup (FSDP2, DeepSpeed) built it to count the steps
        else:
            self._resume_position = position

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Runs for the batch about to be trained on (not the one Lightning prefetches): the resume position.
        loader = self._train_loader
        if loader is not None and self.trainer is not None and self.trainer.training:
            if isinstance(loader, StreamingLoader):
                self._stream_position = batch.stream_position
            else:
                loader.batches_done += 1
        return batch

    def val_dataloader(self) -> DataLoader:
        # Several processes: each rank scores a disjoint share, none repeated, so the metrics (sums and counts
        # reduced across ranks) equal a single process's exactly.
        rank, world = self._rank_and_world()
        sampler = UnrepeatedDistributedSampler(self.val_tokens, world, rank, shuffle=False) if world > 1 else None
        return DataLoader(
            self.val_tokens,
            batch_size=self.eval_batch_size,
            shuffle=False,
            sampler=sampler,
            collate_fn=self.collator,
            num_workers=self.num_workers,
        )

    def _rank_and_world(self) -> tuple[int, int]:
        """This process's rank and the number of processes. The loaders shard the data themselves (the trainer
        configs set use_distributed_sampler=false), which keeps the resumable order under DDP/FSDP/DeepSpeed."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
