"""Summarize a Hydra multirun: every job's metrics.json and config.yaml -> summary.csv, summary.md, summary.png.

python sweeps/summarize.py multirun/2026-11-27/10-00-00            # writes into that directory
python sweeps/summarize.py <dir> --x loss.beta --out <dir>/summary
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import yaml

COLUMNS = ["val/rewards/accuracies", "val/rewards/margins", "val/kl", "val/loss", "train/loss"]
PLOTTED = ["val/rewards/accuracies", "val/rewards/margins", "val/kl"]


def lookup(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def collect(sweep_dir: Path, x: str) -> list[dict[str, Any]]:
    """One row per finished job (a folder holding metrics.json), sorted by the swept value."""
    rows = []
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json")):
        job = metrics_file.parent
        config = yaml.safe_load((job / "config.yaml").read_text()) if (job / "config.yaml").exists() else {}
        metrics = json.loads(metrics_file.read_text())
        rows.append(
            {
                "job": job.name,
                x: lookup(config, x),
                "loss": lookup(config, "loss._target_"),
                **{c: metrics.get(c) for c in COLUMNS},
            }
        )
    return sorted(rows, key=lambda r: (r[x] is None, r[x] if isinstance(r[x], (int, float)) else str(r[x])))


def write(rows: list[dict[str, Any]], x: str, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    header = ["job", x, "loss", *COLUMNS]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else ("" if v is None else str(v))  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(r[h]) for h in header) + " |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    paths = [out.with_suffix(".csv"), out.with_suffix(".md")]
    numeric = [r for r in rows if isinstance(r[x], (int, float))]
    if numeric:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2))
        for ax, metric in zip(axes, PLOTTED):
            points = [(r[x], r[metric]) for r in numeric if r[metric] is not None]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o")
            ax.set(xlabel=x, title=metric)
            if len({p[0] for p in points}) > 2 and min(p[0] for p in points) > 0:
                ax.set_xscale("log")
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=110)
        plt.close(fig)
        paths.append(out.with_suffix(".png"))
    return paths


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (its jobs are its numbered subfolders)")
    parser.add_argument("--x", default="loss.beta", help="the swept config key to tabulate and plot against")
    parser.add_argument(
        "--out", type=Path, default=None, help="output path without suffix (default <sweep_dir>/summary)"
    )
    args = parser.parse_args(argv)
    rows = collect(args.sweep_dir, args.x)
    if not rows:
        raise SystemExit(f"no finished jobs (*/metrics.json) under {args.sweep_dir}")
    paths = write(rows, args.x, args.out or args.sweep_dir / "summary")
    print(f"{len(rows)} jobs -> " + ", ".join(str(p) for p in paths))
    return paths


if __name__ == "__main__":
    main()
