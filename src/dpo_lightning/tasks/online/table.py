"""The online loop's per-round table: one row per round from its evaluation (`round_<r>/eval/metrics.json`, and
`head_to_head.json` when the rounds are judged against another run), written as rounds.csv, rounds.md and a plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...core.tables import write_table
from ...evaluation.head_to_head import HEAD_TO_HEAD
from .pairs import read_lines

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


def round_row(r: int, rdir: Path) -> dict[str, Any]:
    ev = json.loads((rdir / "eval" / "metrics.json").read_text())
    judge = ev.get("judge") or {}
    greedy = judge.get("greedy") or {}
    return {
        "round": r,
        "pairs": len(read_lines(rdir / "pairs.jsonl")),
        "win_rate": greedy.get("win_rate"),
        "win_low": greedy.get("ci_low"),
        "win_high": greedy.get("ci_high"),
        "win_rate_vs_reference": ((judge.get("reference") or {}).get("dpo") or {}).get("win_rate"),
        "judge_accuracy": (judge.get("accuracy_on_pairs") or {}).get("value"),
        "kl_per_token": ev["kl"]["kl_per_token"],
        "opening_share": ev["diversity"]["dpo"]["opening_share"]["value"],
        "phrase_share": ev["diversity"]["dpo"].get("phrase_share", {}).get("value"),
        "distinct_2": ev["diversity"]["dpo"]["distinct_2"]["value"],
        "logp_chosen_change": ev["displacement"]["chosen"]["change"]["value"],
        "warnings": len(ev.get("warnings") or []),
        **head_to_head_row(rdir / "eval" / HEAD_TO_HEAD),
    }


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
    head = ("head_to_head", "head_to_head_low", "head_to_head_high", "head_to_head_equal_length")
    columns = TABLE + [c for c in head if any(c in row for row in rows)]
    write_table(rows, columns, out / "rounds", digits=3)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    x = [row["round"] for row in rows]
    if all(row["win_rate"] is not None for row in rows):
        low = [row["win_rate"] - row["win_low"] for row in rows]
        high = [row["win_high"] - row["win_rate"] for row in rows]
        left.errorbar(x, [row["win_rate"] for row in rows], yerr=[low, high], marker="o", capsize=4)
    left.axhline(0.5, color="black", lw=1, ls="--")
    left.set(xlabel="round", ylabel="win rate over base", ylim=(0, 1), xticks=x)
    right.plot(x, [row["kl_per_token"] for row in rows], marker="o")
    right.set(xlabel="round", ylabel="KL(policy || initial) per token", xticks=x)
    fig.tight_layout()
    fig.savefig(out / "rounds.png", dpi=110)
    plt.close(fig)
