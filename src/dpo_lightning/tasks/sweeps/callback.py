"""The Hydra callback behind every `python train.py -m ...`: summary.csv, summary.md and summary.png in the sweep's
directory, refreshed as each job ends (so a multirun that Hydra's basic sweeper stops at a failed job still lists
it, as failed), written once more when the multirun ends, then one line saying where it is and which job was best.
Registered in conf/train.yaml under `hydra.callbacks.sweep_summary`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .jobs import SweepFileError, SweepSpec
from .summary import Summary, summarize, write_summary

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    """`x`: the key to plot against (default: the first numeric swept key); `direction`: maximize or minimize
    `optimized_metric` when naming the best job (default: the sweeper's direction, else a loss is minimized);
    `enabled: false` for a root config that composes train.yaml but whose jobs leave no metrics.json."""

    def __init__(self, x: str | None = None, direction: str | None = None, enabled: bool = True) -> None:
        if direction not in (None, "maximize", "minimize"):
            raise ValueError(f"hydra.callbacks.sweep_summary.direction: {direction!r}; use maximize, minimize or null")
        self.x = x
        self.direction = direction
        self.enabled = enabled
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # resolved once, before the sweeper reads it, so `${now:...}` gives the sweeper's directory and ours alike
        self.sweep_dir = Path(config.hydra.sweep.dir)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not self.enabled or OmegaConf.select(config, "hydra.mode") != RunMode.MULTIRUN:
            return
        written = self.write(Path(config.hydra.sweep.dir), config, in_job=True)
        if written is not None and job_return.status == JobStatus.FAILED:
            summary, paths = written
            log.warning("%s", summary.line(paths))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        written = self.write(self.sweep_dir or Path(config.hydra.sweep.dir), config)
        if written is not None:
            summary, paths = written
            log.info("%s", summary.line(paths))

    def write(self, sweep_dir: Path, config: DictConfig, in_job: bool = False) -> tuple[Summary, list[Path]] | None:
        """Summarise the jobs under `sweep_dir` so far; a file that cannot be read is one warning, never a failed
        job or sweep. `in_job`: `config` is a job's, with its own overrides, not the sweep's: those are read from
        the multirun.yaml the sweeper saved, where it did."""
        try:
            saved = in_job and (sweep_dir / "multirun.yaml").is_file()
            spec = SweepSpec.read(sweep_dir) if saved else SweepSpec.from_config(multirun_view(config))
            summary = summarize(sweep_dir, spec, x=self.x, direction=self.direction)
            paths = write_summary(summary, x=self.x)
        except (SweepFileError, ValueError, OSError) as e:
            log.warning("sweep summary of %s not written: %s", sweep_dir, e)
            return None
        return summary, paths


def multirun_view(config: DictConfig) -> dict[str, Any]:
    """The parts of the multirun's config the summary reads, as plain values (the rest is left unresolved)."""
    keys = ("hydra.overrides.task", "hydra.sweeper.params", "hydra.sweeper.direction", "optimized_metric")
    view: dict[str, Any] = {}
    for key in keys:
        value = OmegaConf.select(config, key, default=None)
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        node = view
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return view
