"""Checkpoint writes that a kill or a full disk cannot corrupt, and the checkpoint `resume=true` can trust.

Files are written beside their target and renamed over it, and `last.ckpt` is a symlink swapped in by a rename
(Lightning's own link removes the old one first, leaving a moment with no `last.ckpt`). A killed process loses
nothing the OS already holds, so no fsync is needed against kills; power-loss durability is the filesystem's job.
A write that fails (a full disk) removes its temporary file and says where, how much space is free and how much the
save needs. `resumable_checkpoint` skips, with a warning, a checkpoint that is truncated or unreadable.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


class DiskFullError(OSError):
    """A save that did not fit on its disk; the previous checkpoint or export is untouched."""


def payload_bytes(obj: Any) -> int:
    """The bytes of every tensor in a (nested) checkpoint: about the size of its file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(payload_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(payload_bytes(v) for v in obj)
    return 0


def raise_if_disk_full(path: Path, needed: int, error: BaseException) -> None:
    """After a failed write of about `needed` bytes to `path`: a `DiskFullError` naming the path and the space when
    the disk cannot hold it (the write may have failed as an OSError or as torch's RuntimeError)."""
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    if free < needed or getattr(error, "errno", None) == errno.ENOSPC:
        raise DiskFullError(
            errno.ENOSPC,
            f"no space left to write {path}: {_size(free)} free on its filesystem, this save needs about "
            f"{_size(needed)} (free at least {_size(max(needed - free, 0))} more); the previous files are untouched "
            f"({type(error).__name__}: {error})",
        ) from error


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class AtomicCheckpointIO(TorchCheckpointIO):
    """A kill during a save leaves at most a stray hidden `*.tmp`; the previous checkpoint stays whole. A failed
    write (a full disk) removes its temporary file and raises `DiskFullError` naming the path and the space."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
        except (OSError, RuntimeError) as error:
            tmp.unlink(missing_ok=True)
            raise_if_disk_full(path, payload_bytes(checkpoint), error)
            raise
        os.replace(tmp, path)


def checkpoint_problem(path: Path) -> str | None:
    """Why `path` cannot be resumed from, or None when it looks whole. A checkpoint file is a zip archive: its
    central directory (at the end) must be readable and every member must lie inside the file, which catches a
    truncated or cut-short copy without reading the whole file. A sharded checkpoint (a directory) must hold the file
    its save writes last (`sharded_checkpoint_problem`)."""
    if path.is_dir():
        return sharded_checkpoint_problem(path)
    try:
        size = path.stat().st_size
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.header_offset + info.compress_size > size:
                    return f"member {info.filename} runs past the end of the file (truncated)"
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        return f"not a readable checkpoint: {error}"
    return None


def sharded_checkpoint_problem(path: Path) -> str | None:
    """A checkpoint folder cut off mid-save lacks what its save writes last: DeepSpeed's `latest` tag file, or for
    trainer=fsdp and fsdp2 (torch.distributed.checkpoint) the `.metadata` index, written once every rank's shard
    is, and Lightning's `meta.pt` (the trainer's state, written after it)."""
    names = {p.name for p in path.iterdir()}
    if not names:
        return "an empty checkpoint directory"
    if (path / "checkpoint").is_dir():  # DeepSpeed's layout (Lightning saves under the tag "checkpoint")
        return None if "latest" in names else "an incomplete DeepSpeed checkpoint (no latest: cut off mid-save)"
    missing = [name for name in (".metadata", "meta.pt") if name not in names]
    if missing:
        return f"an incomplete sharded checkpoint (no {' or '.join(missing)}: cut off mid-save)"
    return checkpoint_problem(path / "meta.pt")


def resumable_checkpoint(checkpoints: Path) -> str | None:
    """What `resume=true` continues from: `last.ckpt`, else the newest other checkpoint; each one that is damaged
    is skipped with a warning naming it and the reason, and the next newest whole one is taken."""
    last = checkpoints / "last.ckpt"
    others = sorted(
        (p for p in checkpoints.glob("*.ckpt") if p.name != "last.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    seen: set[Path] = set()
    for candidate in ([last] if os.path.lexists(last) else []) + others:
        real = candidate.resolve()
        if real in seen:
            continue
        seen.add(real)
        problem = "it points to a missing file" if not real.exists() else checkpoint_problem(real)
        if problem is None:
            return str(candidate)
        log.warning("resume=true: skipping checkpoint %s: %s; trying the next newest", candidate, problem)
    return None


class AtomicModelCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose `save_last="link"` replaces last.ckpt atomically (a new symlink renamed over it), and
    that writes no extra full copy at the end of a run in which it saved nothing when another checkpoint (the
    epoch-end one) already holds the final state; `resume=true` falls back to the newest checkpoint."""

    def on_train_end(self, trainer, pl_module) -> None:
        covered = any(
            cb is not self and getattr(cb, "_last_global_step_saved", -1) == trainer.global_step
            for cb in trainer.checkpoint_callbacks
        )
        if self.save_last == "link" and not self._last_checkpoint_saved and covered:
            return  # another checkpoint already holds this final state
        super().on_train_end(trainer, pl_module)

    @staticmethod
    def _link_checkpoint(trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            tmp = f"{linkpath}.{os.getpid()}.link"
            if os.path.lexists(tmp):
                os.remove(tmp)
            os.symlink(os.path.relpath(filepath, os.path.dirname(linkpath)), tmp)
            os.replace(tmp, linkpath)
        trainer.strategy.barrier()


def save_rng_states(checkpoint: dict[str, Any]) -> None:
    """The random state at the checkpoint (torch, Python, CUDA), so a resumed run continues it exactly."""

    checkpoint["rng_states"] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(checkpoint: dict[str, Any]) -> None:

    states = checkpoint.get("rng_states")
    if states:
        torch.set_rng_state(states["torch"])
        random.setstate(states["python"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])
