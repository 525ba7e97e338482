"""Summarize a Hydra multirun after the fact (every `python train.py -m ...` already does it as it ends, through the
callback in conf/train.yaml): every job's metrics.json, config.yaml and .hydra/ -> summary.csv, summary.md,
summary.png, a job without metrics.json listed as failed; with --frontier, also every job's judged evaluation
(eval/metrics.json) -> the reward-KL frontier (the DPO paper's Figure 2): frontier.csv, frontier.md, frontier.png,
the base model included at KL 0. The logic is the package's: dpo_lightning.tasks.sweeps.

python sweeps/summarize.py multirun/2026-11-27/10-00-00            # writes into that directory
python sweeps/summarize.py <dir> --x loss.beta --out <dir>/summary
python sweeps/summarize.py <dir> --frontier                         # after evaluate.py judge=... in every job
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dpo_lightning.tasks.sweeps import SweepFileError, frontier_rows, summarize, write_frontier, write_summary


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (its jobs are its numbered subfolders)")
    parser.add_argument(
        "--x", default=None, help="a config key to tabulate and plot against (default: the swept keys, found)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output path without suffix (default <sweep_dir>/summary)"
    )
    parser.add_argument(
        "--direction",
        choices=["maximize", "minimize"],
        default=None,
        help="how optimized_metric ranks the jobs (default: the sweeper's; else a loss is minimized)",
    )
    parser.add_argument("--frontier", action="store_true", help="also the reward-KL frontier of the judged jobs")
    args = parser.parse_args(argv)
    try:
        summary = summarize(args.sweep_dir, x=args.x, direction=args.direction)
        if not summary.jobs:
            raise SweepFileError(f"no jobs (numbered folders with .hydra/ or metrics.json) under {args.sweep_dir}")
        written = write_summary(summary, args.out, x=args.x)
        paths = list(written)
        if args.frontier:
            points = frontier_rows(args.sweep_dir)
            if not points:
                raise SweepFileError(f"no evaluated jobs (*/eval/metrics.json) under {args.sweep_dir}")
            paths += write_frontier(points, args.sweep_dir)
            print((args.sweep_dir / "frontier.md").read_text())
    except SweepFileError as e:
        raise SystemExit(str(e)) from None
    print(summary.line(written))
    return paths


if __name__ == "__main__":
    main()
