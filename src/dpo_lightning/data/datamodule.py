"""`PreferenceDataModule`: load rows (a local file or folder, the built-in set or a Hub dataset), split, tokenize
once, batch; or, with `streaming`, read and tokenize the training pairs on the fly (`streaming.py`)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from .collate import PackedPairCollator, PairCollator
from .formats import PairFormat, PreferencePair
from .readers import BUILTIN_PREFIX, BadRows, check_data_path, is_local, iter_rows
from .resumable import ResumableLoader
from .streaming import MixedStream, SourceStream, StreamingLoader
from .tokenize import PairTokenizer, TokenizedPair, check_truncation, pad_token_id

log = logging.getLogger(__name__)


def validation_source(path: str, val_path: str | None, val_split: str | None) -> tuple[str, str] | None:
    """Where validation pairs come from: (`val_path`, its split); the hub dataset `path` at `val_split`; or None,
    meaning a held-out fraction of the training rows."""
    if val_path:
        return str(val_path), val_split or "test"
    if val_split and not path.startswith(BUILTIN_PREFIX) and not is_local(path):
        return path, val_split
    return None


class PreferenceDataModule(LightningDataModule):
    """Preference pairs for training and validation.

    Validation comes from `val_path` (a file, or a hub id read at `val_split`), else from `path` itself at
    `val_split` when `path` is a hub id and `val_split` is set, else from a held-out fraction `val_fraction`
    of the training rows chosen by a fixed permutation (`split_seed`), so the split never changes between runs.

    A bad row stops loading with its file, line and field (`on_bad_row=error`), or is skipped and counted
    (`on_bad_row=skip`). What was skipped, truncated or dropped is logged and, with `report_path`, saved as JSON.
    """

    def __init__(
        self,
        format: PairFormat | None = None,
        path: str | None = None,
        tokenizer: Any = None,
        split: str = "train",
        subset: str | None = None,
        data_dir: str | None = None,
        val_path: str | None = None,
        val_split: str | None = None,
        val_fraction: float = 0.05,
        split_seed: int = 0,
        max_train_pairs: int | None = None,
        max_val_pairs: int | None = None,
        max_length: int = 512,
        max_prompt_length: int = 256,
        truncation_mode: str = "keep_end",
        chat_template: bool = False,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 42,
        on_bad_row: str = "error",
        report_path: str | None = None,
        packing: bool = True,
        streaming: bool = False,
        shuffle_buffer: int = 10_000,
    ) -> None:
        super().__init__()
        # Every setting is checked here, before anything loads (the config check builds this object to run them).
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        check_data_path("path", path)
        check_data_path("val_path", val_path)
        check_truncation(max_length, max_prompt_length, truncation_mode)
        self.format, self.path = format, path and str(path)
        self.split, self.subset, self.data_dir = split, subset, data_dir
        self.val_path, self.val_split, self.val_fraction, self.split_seed = (
            val_path,
            val_split,
            val_fraction,
            split_seed,
        )
        self.max_train_pairs, self.max_val_pairs = max_train_pairs, max_val_pairs
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.on_bad_row, self.report_path = on_bad_row, report_path
        self.packing, self.chat_template = packing, chat_template
        self.streaming, self.shuffle_buffer = streaming, shuffle_buffer
        BadRows(on_bad_row)
        if shuffle_buffer < 1:
            raise ValueError(f"data.shuffle_buffer must be >= 1 (pairs shuffled together), got {shuffle_buffer}")
        if streaming:
            check_streaming(self)
        self.report: dict[str, Any] = {}
        self.tokenizer = tokenizer
        self.pair_tokenizer = (
            PairTokenizer(tokenizer, max_length, max_prompt_length, truncation_mode)  # chat: see `as_configured`
            if tokenizer
            else None
        )
        self.train_pairs: list[PreferencePair] = []
        self.val_pairs: list[PreferencePair] = []
        self.train_tokens: list[TokenizedPair] = []
        self.val_tokens: list[TokenizedPair] = []

    # -- loading -------------------------------------------------------------------------------------------
    def load_pairs(self) -> tuple[list[PreferencePair], list[PreferencePair]]:
        """Training and validation pairs (training: none when streaming), bad rows handled and reported."""
        if self.format is None or not self.path:
            raise ValueError("PreferenceDataModule needs data.format and data.path")
        bad = {"train": BadRows(self.on_bad_row), "val": BadRows(self.on_bad_row)}
        source = validation_source(self.path, self.val_path, self.val_split)
        train = [] if self.streaming else self.read(self.path, self.split, bad["train"])
        if source:
            val = self.read(*source, bad["val"])
        else:
            train, val = self.held_out_split(train)
        for split, rows in bad.items():
            self.report[split] = {"bad_rows": rows.summary()}
            if rows.counts:
                log.warning(
                    "%s: skipped %d bad rows %s; first: %s",
                    split,
                    sum(rows.counts.values()),
                    dict(rows.counts),
                    [e for examples in rows.examples.values() for e in examples][:3],
                )
        if getattr(self.format, "counts", None):
            self.report["format"] = dict(+self.format.counts)
        if not train and not self.streaming:
            raise ValueError(f"no training pairs in {self.path}")
        return train[: self.max_train_pairs], val[: self.max_val_pairs]

    def read(self, path: str, split: str, bad_rows: BadRows) -> list[PreferencePair]:
        pairs = self.format.load(iter_rows(path, split, self.subset, self.data_dir), bad_rows)
        return [self.as_configured(p) for p in pairs]

    def as_configured(self, pair: PreferencePair) -> PreferencePair:
        """The pair as this source renders it: as chat turns with `chat_template` (each source of a mixture its own)."""
        return pair.as_chat() if self.chat_template else pair

    def source_stream(self, pair_tokenizer: PairTokenizer, seed: int) -> SourceStream:
        """This module's training pairs as a stream, parsed (bad rows as `on_bad_row` says) and tokenized on the fly."""
        bad_rows = BadRows(self.on_bad_row)

        def to_pair(where: str, row: Any) -> TokenizedPair | None:
            pair = self.format.parse_row(where, row, bad_rows)
            return None if pair is None else pair_tokenizer(self.as_configured(pair))

        def rows():
            return iter_rows(self.path, self.split, self.subset, self.data_dir, streaming=True)

        return SourceStream(rows, to_pair, self.shuffle_buffer, seed)

    def train_stream(self) -> MixedStream:
        return MixedStream([self.source_stream(self.pair_tokenizer, self.seed)], [1.0], self.seed)

    def held_out_split(self, pairs: list[PreferencePair]) -> tuple[list[PreferencePair], list[PreferencePair]]:
        n_val = max(1, math.ceil(len(pairs) * self.val_fraction)) if len(pairs) > 1 else 0
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(self.split_seed)).tolist()
        held = set(order[:n_val])
        return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]

    def setup(self, stage: str | None = None) -> None:
        if self.train_tokens:
            return
        if self.pair_tokenizer is None:
            raise ValueError("PreferenceDataModule needs a tokenizer (train.py passes the model's)")
        train, val = self.load_pairs()
        if self.streaming:  # read, tokenized and counted as the stream goes
            self.report.setdefault("train", {}).update(streaming=True, shuffle_buffer=self.shuffle_buffer)
        else:
            self.train_pairs, self.train_tokens = self._tokenize(train, "train")
        self.val_pairs, self.val_tokens = self._tokenize(val, "val")
        if self.report_path:
            Path(self.report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(self.report_path).write_text(json.dumps(self.report, indent=2) + "\n")

    def _tokenize(self, pairs: list[PreferencePair], name: str) -> tuple[list[PreferencePair], list[TokenizedPair]]:
        """Token ids of every pair; pairs dropped as over-long leave both lists, which stay aligned."""
        kept = [(p, t) for p in pairs if (t := self.pair_tokenizer(p)) is not None]
        truncated, dropped = sum(t.truncated for _, t in kept), len(pairs) - len(kept)
        log.info("%s: %d pairs (%d truncated, %d dropped as over-long)", name, len(kept), truncated, dropped)
        self.report.setdefault(name, {}).update(pairs=len(kept), truncated=truncated, dropped_overlong=dropped)
        return [p for p, _ in kept], [t for _, t in kept]

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
        if getattr(self, "_resume_position", None):
            self._train_loader.resume_at(self._resume_position)
            self._resume_position = None
        return self._train_loader

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: where the training data stands, for an exact mid-epoch resume."""
        loader = getattr(self, "_train_loader", None)
        if isinstance(loader, StreamingLoader):
            return {"train_position": getattr(self, "_stream_position", None) or loader.start}
        return {"train_position": loader.position()} if loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume_position = state_dict.get("train_position")

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        # Runs for the batch about to be trained on (not the one Lightning prefetches): the resume position.
        loader = getattr(self, "_train_loader", None)
        if loader is not None and self.trainer is not None and self.trainer.training:
            if isinstance(loader, StreamingLoader):
                self._stream_position = batch.stream_position
            else:
                loader.batches_done += 1
        return batch

    def all_pairs_dataloader(self) -> DataLoader:
        """Every training and validation pair once, in order: what the reference log-prob cache must cover."""
        if self.streaming:
            raise ValueError("module.precompute_ref needs every training pair in advance: not with data.streaming")
        return DataLoader(
            self.train_tokens + self.val_tokens,
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=self.collator,
            num_workers=self.num_workers,
        )

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


def check_streaming(data: PreferenceDataModule) -> None:
    """What streaming needs: a validation source of its own (a held-out fraction needs the whole set), no
    worker processes (the stream is read in this process) and no cap or selection over the whole set."""
    if data.path and not validation_source(data.path, data.val_path, data.val_split):
        raise ValueError(
            f"data.streaming: {data.path} needs a validation source (data.val_path, or data.val_split of a Hub set): "
            "a held-out fraction needs the whole set in memory"
        )
    if data.num_workers:
        raise ValueError("data.streaming reads in the training process: set data.num_workers=0")
    if data.max_train_pairs:
        raise ValueError("data.max_train_pairs needs the whole set: with data.streaming, set trainer.max_steps")
