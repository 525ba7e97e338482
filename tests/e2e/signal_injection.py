"""Test helpers: the process sends itself a signal at the start of a given optimizer step, on one rank (as a
scheduler's signal lands in the middle of a step, on whichever process it reaches), or after a given chunk of a
phase of the online loop."""

from __future__ import annotations

import os
import signal

from lightning import Callback


class SendSignal(Callback):
    """`once_file`: send only if that file does not exist yet (and create it), across processes: a run that builds
    several trainers (the online loop, one per round) is signalled once."""

    def __init__(self, at_step: int = 3, signal_name: str = "SIGTERM", rank: int = 0, once_file: str | None = None):
        self.at_step, self.signum, self.rank = at_step, getattr(signal, signal_name), rank
        self.sent, self.once_file = False, once_file

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.sent and trainer.global_step == self.at_step and trainer.global_rank == self.rank:
            self.sent = True
            if self.once_file:
                if os.path.exists(self.once_file):
                    return
                open(self.once_file, "w").close()
            os.kill(os.getpid(), self.signum)


class SignalAtChunk:
    """An online-loop hook (`online.hooks`): the process signals itself once the given chunk of the given phase and
    round is saved (once, across processes, through `once_file`)."""

    def __init__(self, phase: str, round: int, chunk: int, once_file: str, signal_name: str = "SIGTERM") -> None:
        self.at, self.once_file, self.signum = (phase, round, chunk), once_file, getattr(signal, signal_name)

    def on_chunk(self, phase: str, round: int, chunk: int) -> None:
        if (phase, round, chunk) == self.at and not os.path.exists(self.once_file):
            open(self.once_file, "w").close()
            os.kill(os.getpid(), self.signum)
