"""A test helper callback: the process sends itself a signal at the start of a given optimizer step, on one rank
(as a scheduler's signal lands in the middle of a step, on whichever process it reaches)."""

from __future__ import annotations

import os
import signal

from lightning import Callback


class SendSignal(Callback):
    def __init__(self, at_step: int = 3, signal_name: str = "SIGTERM", rank: int = 0) -> None:
        self.at_step, self.signum, self.rank = at_step, getattr(signal, signal_name), rank
        self.sent = False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not self.sent and trainer.global_step == self.at_step and trainer.global_rank == self.rank:
            self.sent = True
            os.kill(os.getpid(), self.signum)
