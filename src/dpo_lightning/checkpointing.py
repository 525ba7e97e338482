"""Checkpoint writes that a kill cannot corrupt.

Files are written beside their target and renamed over it, and `last.ckpt` is a symlink swapped in by a rename
(Lightning's own link removes the old one first, leaving a moment with no `last.ckpt`). A killed process loses
nothing the OS already holds, so no fsync is needed against kills; power-loss durability is the filesystem's job.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """A kill during a save leaves at most a stray hidden `*.tmp`; the previous checkpoint stays whole."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


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
