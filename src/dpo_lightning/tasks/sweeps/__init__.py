"""A multirun's results read back from its job folders: the summary (summary.{csv,md,png}, written by the Hydra
callback `SweepSummary` that conf/train.yaml registers, or by `python sweeps/summarize.py <dir>`) and the reward-KL
frontier of its judged jobs (`--frontier`)."""

from .callback import SweepSummary
from .frontier import frontier_rows, write_frontier
from .jobs import SweepFileError, SweepJob, SweepSpec, read_jobs, swept_keys
from .summary import Summary, summarize, write_summary

__all__ = [
    "Summary",
    "SweepFileError",
    "SweepJob",
    "SweepSpec",
    "SweepSummary",
    "frontier_rows",
    "read_jobs",
    "summarize",
    "swept_keys",
    "write_frontier",
    "write_summary",
]
