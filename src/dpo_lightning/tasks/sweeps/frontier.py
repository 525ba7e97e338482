"""The reward-KL frontier of a multirun's judged jobs (the DPO paper's Figure 2): every job's `eval/metrics.json`
(after `evaluate.py judge=...` in each) -> frontier.csv, frontier.md and frontier.png, the base model at KL 0."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...core.tables import write_table
from .jobs import SweepFileError, lookup, read_job

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
    evaluations = [(path, read_evaluation(path)) for path in sorted(sweep_dir.glob("*/eval/metrics.json"))]
    rows = [job_row(path, ev) for path, ev in evaluations]
    if evaluations:  # the same base model and seeded samples in every job: one point
        rows.append(base_row(evaluations[0][1]))
    return rows


def read_evaluation(path: Path) -> dict[str, Any]:
    try:
        ev = json.loads(path.read_text())
    except ValueError as e:
        raise SweepFileError(f"{path}: not readable as JSON ({e})") from e
    if not ev.get("judge"):
        raise SweepFileError(f"{path}: evaluated without a judge (evaluate.py judge=...)")
    return ev


def job_row(path: Path, ev: dict[str, Any]) -> dict[str, Any]:
    job = read_job(path.parent.parent)
    t1, greedy, dpo = ev["judge"]["temperature_1"], ev["judge"]["greedy"], ev["diversity"]["dpo"]
    return {
        "job": job.name,
        "loss": job.loss,
        "beta": lookup(job.config, "loss.beta"),
        "kl_per_sequence": ev["kl"]["kl_per_sequence"],
        "kl_per_token": ev["kl"]["kl_per_token"],
        "reward": t1["reward_dpo"]["value"],
        "reward_low": t1["reward_dpo"]["ci_low"],
        "reward_high": t1["reward_dpo"]["ci_high"],
        "win_rate_greedy": greedy["win_rate"],
        "win_low": greedy["ci_low"],
        "win_high": greedy["ci_high"],
        "judge_accuracy": ev["judge"]["accuracy_on_pairs"]["value"],
        "opening_share": dpo["opening_share"]["value"],
        "phrase_share": dpo.get("phrase_share", {}).get("value"),
        "distinct_2": dpo["distinct_2"]["value"],
        "logp_chosen_change": ev["displacement"]["chosen"]["change"]["value"],
        "warnings": len(ev.get("warnings") or []),
    }


def base_row(ev: dict[str, Any]) -> dict[str, Any]:
    reward, base = ev["judge"]["temperature_1"]["reward_base"], ev["diversity"]["base"]
    return {
        "job": "base",
        "loss": "-",
        "beta": None,
        "kl_per_sequence": 0.0,
        "kl_per_token": 0.0,
        "reward": reward["value"],
        "reward_low": reward["ci_low"],
        "reward_high": reward["ci_high"],
        "win_rate_greedy": 0.5,
        "win_low": None,
        "win_high": None,
        "judge_accuracy": None,
        "opening_share": base["opening_share"]["value"],
        "phrase_share": base.get("phrase_share", {}).get("value"),
        "distinct_2": base["distinct_2"]["value"],
        "logp_chosen_change": 0.0,
        "warnings": None,
    }


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
