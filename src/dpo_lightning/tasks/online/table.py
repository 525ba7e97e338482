"""The online loop's per-round table: one row per round from its evaluation (`round_<r>/eval/metrics.json`, and
`head_to_head.json` when the rounds are judged against another run), written as rounds.csv, rounds.md and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...core.records import read_pairs
from ...core.tables import write_table
from ...evaluation.head_to_head import HEAD_TO_HEAD
from ...evaluation.records import EvaluationRecord

TABLE = [
    "round",
    "pairs",
    "win_rate",
    "win_low",
    "win_high",
    "win_rate_vs_reference",
    "judge_accuracy",
    "kl_per_token",
    "opening_share",
    "phrase_share",
    "distinct_2",
    "logp_chosen_change",
    "warnings",
]


# present only where a round has them: problems with answers; sampled rounds; online.compare_to
ACCURACY_COLUMNS = ("accuracy", "accuracy_low", "accuracy_high", "base_accuracy", "accuracy_p_value", "pass_at_k",
                    "majority_at_k")  # fmt: skip
HEAD_TO_HEAD_COLUMNS = ("head_to_head", "head_to_head_low", "head_to_head_high", "head_to_head_equal_length")


def round_row(r: int, rdir: Path) -> dict[str, Any]:
    ev = EvaluationRecord.read(rdir / "eval")
    greedy = ev.win_rate("greedy") or {}
    return {
        "round": r,
        "pairs": len(read_pairs(rdir / "pairs.jsonl")),
        "win_rate": greedy.get("win_rate"),
        "win_low": greedy.get("ci_low"),
        "win_high": greedy.get("ci_high"),
        "win_rate_vs_reference": (ev.win_rate_against_reference("dpo") or {}).get("win_rate"),
        "judge_accuracy": (ev.judge_accuracy or {}).get("value"),
        "kl_per_token": ev.kl_per_token,
        "opening_share": ev.share("opening_share"),
        "phrase_share": ev.share("phrase_share"),
        "distinct_2": ev.share("distinct_2"),
        "logp_chosen_change": ev.displacement("chosen")["value"],
        "warnings": len(ev.warnings),
        **accuracy_row(ev.accuracy),
        **sampling_row(rdir),
        **head_to_head_row(rdir / "eval" / HEAD_TO_HEAD),
    }


def accuracy_row(accuracy: dict[str, Any] | None) -> dict[str, Any]:
    """The round's exact-match accuracy on the held-out problems (absent for data without answers)."""
    if not accuracy:
        return {}
    dpo, base, k = accuracy["dpo"], accuracy["base"], accuracy["samples"]
    row = {"accuracy": dpo["greedy"]["value"], "accuracy_low": dpo["greedy"]["ci_low"],
           "accuracy_high": dpo["greedy"]["ci_high"], "base_accuracy": base["greedy"]["value"],
           "accuracy_p_value": accuracy["greedy_difference"]["p_value"]}  # fmt: skip
    if k:
        row.update(pass_at_k=dpo[f"pass_at_{k}"]["value"], majority_at_k=dpo[f"majority_at_{k}"]["value"])
    return row


def sampling_row(rdir: Path) -> dict[str, Any]:
    """The sampling phase's speed and the prompts that gave no pair (absent for an offline round)."""
    row = {}
    if (rdir / "sampling.json").is_file():
        row["answers_per_second"] = json.loads((rdir / "sampling.json").read_text())["answers_per_second"]
    if (rdir / "pairs_report.json").is_file():
        report = json.loads((rdir / "pairs_report.json").read_text())
        row["prompts_without_pair"] = report["prompts"] - report["pairs_before_cap"]
    return row


def head_to_head_row(path: Path) -> dict[str, Any]:
    """The round's greedy answers judged against `online.compare_to`'s (absent without it)."""
    if not path.is_file():
        return {}
    h = json.loads(path.read_text())
    row = {"head_to_head": h["win_rate"], "head_to_head_low": h["ci_low"], "head_to_head_high": h["ci_high"]}
    if "length_controlled" in h:  # the judge's win rate at equal length (files written before it lack it)
        row["head_to_head_equal_length"] = h["length_controlled"]["value"]
    return row


def write_rounds(out: Path, rows: list[dict[str, Any]]) -> None:
    """rounds.csv, rounds.md and rounds.png: the per-round evaluation (win rate over base, KL, ..., and the win rate
    against `online.compare_to` when given)."""
    optional = (*ACCURACY_COLUMNS, "answers_per_second", "prompts_without_pair", *HEAD_TO_HEAD_COLUMNS)
    columns = TABLE + [c for c in optional if any(c in row for row in rows)]
    write_table(rows, columns, out / "rounds", digits=3)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    accuracy = all("accuracy" in row for row in rows)
    fig, axes = plt.subplots(1, 3 if accuracy else 2, figsize=(13.5 if accuracy else 9, 3.4))
    left, right = axes[0], axes[1]
    x = [row["round"] for row in rows]
    if all(row["win_rate"] is not None for row in rows):
        low = [row["win_rate"] - row["win_low"] for row in rows]
        high = [row["win_high"] - row["win_rate"] for row in rows]
        left.errorbar(x, [row["win_rate"] for row in rows], yerr=[low, high], marker="o", capsize=4)
    left.axhline(0.5, color="black", lw=1, ls="--")
    left.set(xlabel="round", ylabel="win rate over base", ylim=(0, 1), xticks=x)
    right.plot(x, [row["kl_per_token"] for row in rows], marker="o")
    right.set(xlabel="round", ylabel="KL(policy || initial) per token", xticks=x)
    if accuracy:
        low = [row["accuracy"] - row["accuracy_low"] for row in rows]
        high = [row["accuracy_high"] - row["accuracy"] for row in rows]
        axes[2].errorbar(x, [row["accuracy"] for row in rows], yerr=[low, high], marker="o", capsize=4, label="policy")
        axes[2].axhline(rows[0]["base_accuracy"], color="black", lw=1, ls="--", label="base")
        axes[2].set(xlabel="round", ylabel="held-out exact-match accuracy (greedy)", ylim=(0, 1), xticks=x)
        axes[2].legend()
    fig.tight_layout()
    fig.savefig(out / "rounds.png", dpi=110)
    plt.close(fig)
