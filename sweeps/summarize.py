"""Summarize a Hydra multirun: every job's metrics.json and config.yaml -> summary.csv, summary.md, summary.png;
with --frontier, also every job's judged evaluation (eval/metrics.json) -> the reward-KL frontier (the DPO paper's
Figure 2): frontier.csv, frontier.md, frontier.png, the base model included at KL 0.

python sweeps/summarize.py multirun/2026-11-27/10-00-00            # writes into that directory
python sweeps/summarize.py <dir> --x loss.beta --out <dir>/summary
python sweeps/summarize.py <dir> --frontier                         # after evaluate.py judge=... in every job
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from dpo_lightning.core.tables import write_table

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
    paths = write_table(rows, ["job", x, "loss", *COLUMNS], out)
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


FRONTIER = [
    "job",
    "loss",
    "beta",
    "kl_per_sequence",
    "kl_per_token",
    "reward",
    "reward_low",
    "reward_high",
    "win_rate_greedy",
    "win_low",
    "win_high",
    "judge_accuracy",
    "opening_share",
    "phrase_share",
    "distinct_2",
    "logp_chosen_change",
    "warnings",
]


def frontier_rows(sweep_dir: Path) -> list[dict[str, Any]]:
    """Per evaluated job: KL(pi || pi_ref) per sequence and the judge's mean reward of the same temperature-1
    samples (BCa interval), its greedy win rate over base (Wilson), and where the recipe starts to collapse: the
    share of greedy answers opening with the most common 3 words, distinct-2, the change in per-token log-prob of
    the held-out chosen answers (likelihood displacement when negative) and the number of warnings raised; then the
    base model itself at KL 0."""
    rows, base, base_diversity = [], [], []
    for path in sorted(sweep_dir.glob("*/eval/metrics.json")):
        ev = json.loads(path.read_text())
        if not ev.get("judge"):
            raise SystemExit(f"{path}: evaluated without a judge (evaluate.py judge=...)")
        job = path.parent.parent
        config = yaml.safe_load((job / "config.yaml").read_text())
        t1, greedy = ev["judge"]["temperature_1"], ev["judge"]["greedy"]
        rows.append(
            {
                "job": job.name,
                "loss": str(lookup(config, "loss._target_")).rsplit(".", 1)[-1],
                "beta": lookup(config, "loss.beta"),
                "kl_per_sequence": ev["kl"]["kl_per_sequence"],
                "kl_per_token": ev["kl"]["kl_per_token"],
                "reward": t1["reward_dpo"]["value"],
                "reward_low": t1["reward_dpo"]["ci_low"],
                "reward_high": t1["reward_dpo"]["ci_high"],
                "win_rate_greedy": greedy["win_rate"],
                "win_low": greedy["ci_low"],
                "win_high": greedy["ci_high"],
                "judge_accuracy": ev["judge"]["accuracy_on_pairs"]["value"],
                "opening_share": ev["diversity"]["dpo"]["opening_share"]["value"],
                "phrase_share": ev["diversity"]["dpo"].get("phrase_share", {}).get("value"),
                "distinct_2": ev["diversity"]["dpo"]["distinct_2"]["value"],
                "logp_chosen_change": ev["displacement"]["chosen"]["change"]["value"],
                "warnings": len(ev.get("warnings") or []),
            }
        )
        base.append(t1["reward_base"])
        base_diversity.append(ev["diversity"]["base"])
    if base:  # the same base model and seeded samples in every job: one point
        b = base[0]
        rows.append(
            {
                "job": "base",
                "loss": "-",
                "beta": None,
                "kl_per_sequence": 0.0,
                "kl_per_token": 0.0,
                "reward": b["value"],
                "reward_low": b["ci_low"],
                "reward_high": b["ci_high"],
                "win_rate_greedy": 0.5,
                "win_low": None,
                "win_high": None,
                "judge_accuracy": None,
                "opening_share": base_diversity[0]["opening_share"]["value"],
                "phrase_share": base_diversity[0].get("phrase_share", {}).get("value"),
                "distinct_2": base_diversity[0]["distinct_2"]["value"],
                "logp_chosen_change": 0.0,
                "warnings": None,
            }
        )
    return rows


def write_frontier(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    paths = write_table(rows, FRONTIER, out / "frontier")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for loss in sorted({r["loss"] for r in rows}):
        points = sorted((r for r in rows if r["loss"] == loss), key=lambda r: r["kl_per_sequence"])
        x, y = [r["kl_per_sequence"] for r in points], [r["reward"] for r in points]
        err = [[r["reward"] - r["reward_low"] for r in points], [r["reward_high"] - r["reward"] for r in points]]
        base = loss == "-"
        ax.errorbar(
            x,
            y,
            yerr=err,
            marker="*" if base else "o",
            ms=12 if base else 6,
            capsize=4,
            ls="none" if base else "-",
            label="base model" if base else loss,
        )
        for r in points:
            if r["beta"] is not None:
                ax.annotate(
                    f"beta={r['beta']}",
                    (r["kl_per_sequence"], r["reward"]),
                    fontsize=7,
                    xytext=(4, 4),
                    textcoords="offset points",
                )
    ax.set(
        xlabel="KL(pi || pi_ref) per sequence (temperature-1 samples)",
        ylabel="mean judge reward of those samples",
        title="Reward-KL frontier",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=110)
    plt.close(fig)
    return [*paths, out / "frontier.png"]


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (its jobs are its numbered subfolders)")
    parser.add_argument("--x", default="loss.beta", help="the swept config key to tabulate and plot against")
    parser.add_argument(
        "--out", type=Path, default=None, help="output path without suffix (default <sweep_dir>/summary)"
    )
    parser.add_argument("--frontier", action="store_true", help="also the reward-KL frontier of the judged jobs")
    args = parser.parse_args(argv)
    rows = collect(args.sweep_dir, args.x)
    if not rows:
        raise SystemExit(f"no finished jobs (*/metrics.json) under {args.sweep_dir}")
    paths = write(rows, args.x, args.out or args.sweep_dir / "summary")
    if args.frontier:
        points = frontier_rows(args.sweep_dir)
        if not points:
            raise SystemExit(f"no evaluated jobs (*/eval/metrics.json) under {args.sweep_dir}")
        paths += write_frontier(points, args.sweep_dir)
        print((args.sweep_dir / "frontier.md").read_text())
    print(f"{len(rows)} jobs -> " + ", ".join(str(p) for p in paths))
    return paths


if __name__ == "__main__":
    main()
