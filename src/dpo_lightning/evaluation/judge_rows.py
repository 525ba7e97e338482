"""The judge's rows of an evaluation's summary: its verdicts (win rates over base and against the reference
answers, mean rewards) and how far to trust it (accuracy on the held-out pairs, order consistency, self-training)."""

from __future__ import annotations

from typing import Any

from .rows import Estimate, Row, Thresholds, ci_of, estimate, fmt


def judge_rows(j: dict[str, Any], t: Thresholds) -> list[Row]:
    return verdict_rows(j, t) + trust_rows(j, t)


def verdict_rows(j: dict[str, Any], t: Thresholds) -> list[Row]:
    """The judge's verdicts: win rates over base and against the reference answers, mean rewards."""
    rows = []
    for kind in ("greedy", "sampled"):
        w = j[kind]
        rows.append(
            Row(
                f"judge: win rate of DPO over base, {kind} answers",
                f"judge_win_rate_{kind}",
                None,
                _win(w),
                note=f"{_wtl(w)} W/T/L" + _equal_length(w),
            )
        )
    ref = j.get("reference")
    if ref:
        wd, wb = ref["dpo"], ref["base"]
        rows.append(
            Row(
                "judge: win rate against the held-out reference (chosen) answers, greedy",
                "judge_win_rate_reference",
                _win(wb),
                _win(wd),
                note=f"W/T/L: DPO {_wtl(wd)}, base {_wtl(wb)}",
                warning=(
                    f"The judge prefers DPO's answers to the hand-written reference answers on "
                    f"{wd['win_rate']:.0%} of the prompts (base's: {wb['win_rate']:.0%}). Read them: a judge "
                    "that ranks a small model's answers above hand-written ones this often is likely rewarding a "
                    "style (the references' wording, or declining) rather than quality."
                    if wd["win_rate"] >= t.reference_win_rate
                    else None
                ),
            )
        )
    if "reward_dpo" in j["greedy"]:
        rows.append(
            Row(
                "judge: mean reward of the greedy answers",
                "judge_reward",
                j["greedy"]["reward_base"],
                j["greedy"]["reward_dpo"],
                ref["dpo"]["reward_reference"] if ref else None,
            )
        )
    return rows


def trust_rows(j: dict[str, Any], t: Thresholds) -> list[Row]:
    """How far to trust the judge: its accuracy on the held-out pairs, its order consistency, self-training."""
    acc = j["accuracy_on_pairs"]
    rows = []
    rows.append(
        Row(
            f"judge: accuracy on the {acc['pairs']} held-out pairs (how far to trust it)",
            "judge_accuracy",
            value=ci_of(acc),
            note=f"{j['kind']} {j['model']}",
            warning=(
                f"The judge ranks only {acc['value']:.0%} of the held-out pairs correctly: its verdicts are weak."
                if acc["value"] < t.judge_accuracy
                else None
            ),
        )
    )
    consistency = acc.get("order_consistency")
    if consistency:
        rows.append(
            Row(
                "judge: share of held-out pairs where both answer orders gave the same verdict",
                "judge_order_consistency",
                value=ci_of(consistency),
                warning=(
                    f"The LLM judge changed its verdict when the answers swapped places on "
                    f"{1 - consistency['value']:.0%} of the held-out pairs (position bias): a weak judge."
                    if consistency["value"] < t.order_consistency
                    else None
                ),
            )
        )
    if j.get("self_trained"):
        rows[-1].warning = (rows[-1].warning + " " if rows[-1].warning else "") + (
            "The judge was trained on the same pairs as the policy, so it grades its own homework: it rewards what "
            "those pairs reward, not what a reader would. Use a judge trained on other data (judge=auto with a "
            "disjoint judge.train.path) or judge=llm."
        )
    return rows


def _win(w: dict[str, Any]) -> Estimate:
    return estimate(w["win_rate"], w["ci_low"], w["ci_high"])


def _equal_length(w: dict[str, Any]) -> str:
    """The win rate at equal length (head_to_head.length_controlled), where the evaluation measured it."""
    lc = w.get("length_controlled")
    return f"; at equal length {fmt(lc, 2)}" if lc else ""


def _wtl(w: dict[str, Any]) -> str:
    return f"{w['wins']}/{w['ties']}/{w['losses']}"
