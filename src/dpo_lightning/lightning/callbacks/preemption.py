"""`Preemption`: SIGTERM, SIGUSR1 or SIGUSR2 stop the run after the current optimizer step, with a checkpoint.

SLURM, Kubernetes and spot machines stop a job with SIGTERM; SLURM's `--signal` (and submitit, which
`hydra/launcher=slurm` uses) sends SIGUSR1 or SIGUSR2 ahead of the time limit. On any of these the run:
1. finishes the optimizer step in progress (a signal mid-accumulation waits for the step's last micro-batch);
2. agrees with every other rank to stop at that same step (one rank receiving the signal is the usual case: the
   flag is reduced with MAX across ranks after every optimizer step);
3. saves a resumable checkpoint, atomically, as `checkpoints/step<N>.ckpt` with `last.ckpt` pointing to it: the
   one `resume=true` picks; the data position, optimizer, scheduler and RNG are in it, so the resumed run is exact;
4. flushes the loggers, hands the signal to the handler that was installed before the run (submitit's, which
   requeues the job), and exits with status `PREEMPTED_EXIT_CODE` (75, EX_TEMPFAIL: "try again"), distinct from
   success (0) and failure (1), so a scheduler can requeue it.

A second signal while stopping only logs; the save is atomic, so nothing can be left half-written. Under SLURM
with Lightning's auto-requeue, Lightning keeps its requeue signal (SIGUSR1): it saves and requeues the job itself.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from lightning import Callback, LightningModule, Trainer
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint

from ..checkpointing import AtomicModelCheckpoint

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = os.EX_TEMPFAIL  # 75


class Preempted(SystemExit):
    """Raised after the preemption checkpoint is saved; the process exits with PREEMPTED_EXIT_CODE."""

    def __init__(self, message: str) -> None:
        super().__init__(PREEMPTED_EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Preemption(Callback):
    def __init__(self, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1", "SIGUSR2")) -> None:
        self.signals = [getattr(signal, name) for name in signals]
        self.received: int | None = None
        self._before: dict[int, Any] = {}  # the handlers installed before the run (submitit's, or the default)
        self._active = False
        self._stepped = False

    # -- signals ---------------------------------------------------------------------------------------------------
    def _handle(self, signum: int, frame: Any) -> None:
        if not self._active:  # the run is over (Lightning may put this handler back): as if it were never here
            self._forward(signum, frame)
            return
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signum
            log.warning("received %s: stopping after the current optimizer step, with a checkpoint", name)
        else:
            log.warning("received %s while already stopping: the checkpoint in progress goes on", name)

    def _forward(self, signum: int, frame: Any) -> None:
        before = self._before.get(signum, signal.SIG_DFL)
        if callable(before):
            before(signum, frame)
        elif before == signal.SIG_DFL:  # the default action (for SIGTERM: end the process)
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _install(self, remember: bool) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python delivers signals to the main thread only
        self._active = True
        for signum in self.signals:
            if remember and signum not in self._before:
                self._before[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        environment = getattr(trainer.strategy, "cluster_environment", None)
        if isinstance(environment, SLURMEnvironment) and environment.auto_requeue:
            # Lightning's own SLURM handling keeps its requeue signal (it saves and requeues the job itself)
            kept = environment.requeue_signal
            if kept in self.signals:
                self.signals.remove(kept)
                log.info("%s is left to Lightning's SLURM auto-requeue", signal.Signals(kept).name)
        if stage == "fit":  # before the model-sized work of fit start (e.g. the precomputed reference pass)
            self._install(remember=True)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning installs its own SIGTERM handler after fit start (it ends the run with status 0 and no
        # checkpoint): ours replaces it for the whole training loop.
        self._install(remember=False)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()  # Lightning skips the teardown hooks when fit ends in an exception (e.g. Preempted)

    def _restore(self) -> None:
        self._active = False
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._before.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    # -- the stop --------------------------------------------------------------------------------------------------
    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self._stepped = True

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if not self._stepped:
            return  # mid-accumulation: the optimizer step is not finished
        self._stepped = False
        signum = self._agreed_signal(trainer)
        if not signum:
            return
        path = self.save(trainer)
        for logger in trainer.loggers:
            logger.save()
        name = signal.Signals(signum).name
        message = (
            f"preempted by {name} after optimizer step {trainer.global_step}: checkpoint {path}; continue with "
            f"`python train.py hydra.run.dir={trainer.default_root_dir} resume=true`"
        )
        log.warning(message)
        before = self._before.get(signum)
        self._restore()
        if callable(before) and self.received == signum:  # e.g. submitit: requeue the job (it may exit here)
            before(signum, None)
        raise Preempted(message)

    def _agreed_signal(self, trainer: Trainer) -> int:
        """The signal any rank received (0 if none): every rank stops at the same step. One process: no collective
        and no device sync; several: one all-reduce of a scalar per optimizer step."""
        if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return self.received or 0
        flag = torch.tensor([self.received or 0], device=trainer.strategy.root_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def save(self, trainer: Trainer) -> Path:
        """`<checkpoints>/step<N>.ckpt`, written atomically, and `last.ckpt` swapped to point at it."""
        periodic = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.dirpath]
        linked = [c for c in periodic if c.save_last == "link"]
        dirpath = Path((linked or periodic)[0].dirpath) if periodic else Path(trainer.default_root_dir) / "checkpoints"
        path = dirpath / f"step{trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)
        AtomicModelCheckpoint._link_checkpoint(trainer, str(path), str(dirpath / "last.ckpt"))
        return path


__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "Preemption"]
