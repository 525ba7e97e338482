"""A multirun's summary: one row per job (its swept values, its loss by option name, its final metrics; a job without
metrics.json listed as failed), the best job by `optimized_metric`, written as summary.csv, summary.md and
summary.png beside the jobs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.tables import write_table
from .jobs import SweepJob, SweepSpec, read_jobs, swept_keys
from .plot import is_number, plot_summary

COLUMNS = ["val/rewards/accuracies", "val/rewards/margins", "val/kl", "val/loss", "train/loss"]
PLOTTED = ["val/rewards/accuracies", "val/rewards/margins", "val/kl"]


def sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, "") if value is None else (1, str(value))


def as_cell(value: Any) -> Any:
    """A swept value for the table: floats as Python writes them (1e-05, 0.1: exact, never rounded to 0.0000)."""
    return str(value) if isinstance(value, float) else value


def lower_is_better(metric: str, direction: str | None) -> bool:
    """The sweeper's (or the callback's) direction when given; else a loss is minimized and any other metric
    (accuracies, margins, rewards) maximized."""
    if direction is not None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"sweep summary direction: {direction!r} is neither maximize nor minimize")
        return direction == "minimize"
    return metric.rsplit("/", 1)[-1].endswith("loss")


@dataclass(frozen=True)
class Summary:
    """The rows of a multirun's summary and what they were made from."""

    sweep_dir: Path
    jobs: list[SweepJob]
    keys: list[str]  # the swept keys, one column each
    metrics: list[str]  # the metric columns present in at least one job
    optimized_metric: str | None
    lower_is_better: bool

    @property
    def header(self) -> list[str]:
        loss = [] if "loss" in self.keys else ["loss"]
        return ["job", "status", *self.keys, *loss, *self.metrics]

    def rows(self) -> list[dict[str, Any]]:
        """One row per job, by swept value (numbers before text), then job number."""
        ordered = sorted(self.jobs, key=lambda j: [sort_key(j.value(k)) for k in self.keys])
        return [
            {
                "job": job.name,
                "status": "failed" if job.failed else "ok",
                **{k: as_cell(job.value(k)) for k in self.keys},
                "loss": job.loss,
                **{m: job.metric(m) for m in self.metrics},
            }
            for job in ordered
        ]

    @property
    def failed(self) -> list[SweepJob]:
        return [job for job in self.jobs if job.failed]

    def best(self) -> SweepJob | None:
        """The finished job with the best finite `optimized_metric`, or None."""
        scored = [j for j in self.jobs if is_number(j.metric(self.optimized_metric))]
        if not scored:
            return None
        pick = min if self.lower_is_better else max
        return pick(scored, key=lambda j: j.metric(self.optimized_metric))

    def line(self, paths: list[Path]) -> str:
        """The one line logged at the end of a multirun: where the summary is (`paths`, as written), how many jobs
        failed, the best job."""
        failed = ", ".join(j.name for j in self.failed)
        where = f"{paths[0].parent}/{{{','.join(p.name for p in paths)}}}" if paths else "(not written)"
        text = f"Sweep summary: {where}: {len(self.jobs)} jobs"
        whose = "its train.log says why" if len(self.failed) == 1 else "each one's train.log says why"
        text += f", {len(self.failed)} failed (job {failed}: {whose})" if failed else ", none failed"
        best = self.best()
        if self.optimized_metric is None:
            return text + "; no optimized_metric to rank the jobs by"
        if best is None:
            return text + f"; no job logged {self.optimized_metric}"
        swept = ", ".join(f"{k}={as_cell(best.value(k))}" for k in self.keys)
        order = "lowest" if self.lower_is_better else "highest"
        value = best.metric(self.optimized_metric)
        tied = [j.name for j in self.jobs if j is not best and j.metric(self.optimized_metric) == value]
        ties = f", tied with job {', '.join(tied)}: the metric does not tell them apart" if tied else ""
        return text + f"; best {self.optimized_metric} ({order}): job {best.name} ({swept}) {value:.4g}{ties}"


def summarize(
    sweep_dir: Path, spec: SweepSpec | None = None, x: str | None = None, direction: str | None = None
) -> Summary:
    """Read every job of the multirun in `sweep_dir`. `spec`: what the multirun was told (default: its saved
    multirun.yaml); `x`: a key to tabulate (and plot against) whether or not it was swept."""
    spec = spec if spec is not None else SweepSpec.read(sweep_dir)
    jobs = read_jobs(sweep_dir)
    named = [j.config["optimized_metric"] for j in jobs if j.config.get("optimized_metric")]
    optimized = spec.optimized_metric or (named[0] if named else None)
    present = [m for m in COLUMNS if any(j.metric(m) is not None for j in jobs)]
    metrics = present + ([optimized] if optimized and optimized not in present else [])
    return Summary(
        sweep_dir=sweep_dir,
        jobs=jobs,
        keys=swept_keys(spec, jobs, also=x),
        metrics=metrics,
        optimized_metric=optimized,
        lower_is_better=lower_is_better(optimized or "", direction or spec.direction),
    )


def write_summary(summary: Summary, out: Path | None = None, x: str | None = None) -> list[Path]:
    """summary.csv, summary.md and (when a job finished) summary.png at `out` (default <sweep dir>/summary), each
    replaced whole: a job ending beside another that writes it too leaves no torn file."""
    out = out if out is not None else summary.sweep_dir / "summary"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}-{os.getpid()}")
    written = write_table(summary.rows(), summary.header, tmp)
    plotted = [m for m in PLOTTED if m in summary.metrics]
    if summary.optimized_metric and summary.optimized_metric not in plotted:
        plotted.append(summary.optimized_metric)
    if len(summary.failed) < len(summary.jobs) and plotted:
        written.append(plot_summary(summary.jobs, summary.keys, plotted, tmp.with_suffix(".png"), x=x))
    paths = []
    for path in written:
        os.replace(path, out.with_suffix(path.suffix))
        paths.append(out.with_suffix(path.suffix))
    return paths
