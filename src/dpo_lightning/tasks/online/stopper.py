"""The online loop's stop signals: SIGTERM, SIGUSR1 or SIGUSR2 end the run after the current chunk or phase (training
has its own `Preemption`, which stops after the current optimizer step), with status 75."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

from ...lightning.callbacks.preemption import Preempted

log = logging.getLogger(__name__)


class Stopper:
    """Remembers a stop signal; the loop checks it between chunks and phases (training has its own Preemption)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.received: int | None = None
        self.before = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = self.received or signum

    def check(self, where: str, out: Path) -> None:
        if self.received:
            name = signal.Signals(self.received).name
            message = f"preempted by {name} {where}; continue with the same command and resume=true ({out})"
            log.warning(message)
            raise Preempted(message)

    def restore(self) -> None:
        for signum, handler in self.before.items():
            signal.signal(signum, handler)
