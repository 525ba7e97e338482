"""The one result of an evaluation. `evaluate()` fills an `EvaluationResult`; its `rows()` are the summary every
output renders (report.md and report.html, the console headline, the model card, the loggers), and its
`warnings()` are the plain-words alarms raised by the figures. A new figure is one more `Row` here.

metrics.json is `to_dict()`: the detailed sections (keys as before) plus `summary` (the rows) and `warnings`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

Estimate = dict[str, float]  # {"value", "ci_low", "ci_high"}


@dataclass
class Thresholds:
    """When a figure turns into a warning (eval.yaml `warn:`)."""

    opening_share: float = 0.2  # DPO's most common opening starts more than this share of its answers (and > base)
    phrase_share: float = 0.3  # DPO's most common 3 words are in more than this share of its answers (and > base)
    distinct_2_drop: float = 0.05  # DPO's distinct-2 is below base's by more than this share of base's
    repetition_rise: float = 0.05  # DPO's mean within-answer repetition is above base's by more than this
    judge_accuracy: float = 0.75  # the judge ranks fewer held-out pairs correctly than this
    reference_win_rate: float = 0.2  # the judge prefers DPO to the hand-written reference answers this often or more
    order_consistency: float = 0.7  # an LLM judge's two orders agree on fewer verdicts than this


@dataclass
class Row:
    """One line of the summary: a figure for base, DPO and the reference answers (any may be absent)."""

    figure: str
    key: str  # stable name: logged as test/<key>/<column>
    base: Estimate | None = None
    dpo: Estimate | None = None
    reference: Estimate | None = None
    note: str = ""
    warning: str | None = None
    digits: int = 3
    value: Estimate | None = None  # a figure of neither model alone (e.g. the judge's own accuracy)


def estimate(value: float, low: float | None = None, high: float | None = None) -> Estimate:
    return {"value": value, "ci_low": value if low is None else low, "ci_high": value if high is None else high}


def fmt(e: Estimate | None, digits: int = 3) -> str:
    if e is None:
        return "-"
    value = f"{e['value']:.{digits}f}"
    if e["ci_low"] == e["ci_high"] == e["value"] or not all(math.isfinite(e[k]) for k in ("ci_low", "ci_high")):
        return value
    return f"{value} [{e['ci_low']:.{digits}f}, {e['ci_high']:.{digits}f}]"


@dataclass
class EvaluationResult:
    run_dir: str
    data: str
    pairs: int
    beta: float
    confidence: float
    intervals: dict[str, str]
    base: dict[str, Any]  # preference accuracies, mean log-probs, response lengths
    dpo: dict[str, Any]
    implicit_reward: dict[str, Any]
    displacement: dict[str, Any]
    kl: dict[str, float] = field(default_factory=dict)
    diversity: dict[str, dict[str, Any]] = field(default_factory=dict)  # base, dpo, reference (greedy answers)
    judge: dict[str, Any] | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)

    # -- the summary -----------------------------------------------------------------------------------------------
    def rows(self) -> list[Row]:
        b, d, t = self.base, self.dpo, self.thresholds
        rows = [
            Row(
                "preference accuracy, per-token log-prob (chosen above rejected)",
                "preference_accuracy_per_token",
                _ci(b, "preference_accuracy_normalized"),
                _ci(d, "preference_accuracy_normalized"),
            ),
            Row(
                "preference accuracy, summed log-prob",
                "preference_accuracy",
                _ci(b, "preference_accuracy"),
                _ci(d, "preference_accuracy"),
            ),
        ]
        for side in ("chosen", "rejected"):
            shift = self.displacement[side]
            change = shift["change"]
            warning = None
            if side == "chosen" and change["ci_high"] < 0:
                warning = (
                    f"Likelihood displacement: the held-out chosen answers became less likely under DPO "
                    f"({change['value']:+.3f} nats per token [{change['ci_low']:+.3f}, {change['ci_high']:+.3f}]); "
                    "the probability went to answers that are in neither side of the pairs. Read the answers."
                )
            rows.append(
                Row(
                    f"log-prob per token of the held-out {side} answers",
                    f"logp_per_token_{side}",
                    shift["base"],
                    shift["dpo"],
                    note=f"change {fmt(change)}",
                    warning=warning,
                )
            )
        rows.append(
            Row(
                "implicit-reward accuracy (DPO vs base)",
                "implicit_reward_accuracy",
                None,
                _ci_of(self.implicit_reward["accuracy"]),
            )
        )
        if self.kl:
            rows.append(Row("KL(DPO || base) per token", "kl_per_token", None, estimate(self.kl["kl_per_token"])))
        rows += self._diversity_rows(t)
        if self.judge:
            rows += self._judge_rows(t)
        return rows

    def _share_row(self, key: str, phrase_key: str, limit: float, figure: str, label: str, consequence: str) -> Row:
        """The share of answers with their most common opening or phrase (`key`, the words in `phrase_key`), for
        base, DPO and the references; a warning when DPO's is over the limit and over base's."""
        base, dpo, ref = (self.diversity.get(k) for k in ("base", "dpo", "reference"))
        pick = [None if m is None else m.get(key) for m in (base, dpo, ref)]
        note = ", ".join(f'{k} "{v.get(phrase_key, "")}"' for k, v in self.diversity.items())
        warning = None
        if pick[1] is not None and pick[1]["value"] > limit and pick[1]["value"] > base[key]["value"]:
            share, n = pick[1]["value"], dpo["answers"]
            with_ref = f", reference answers: {ref[key]['value']:.0%}" if ref else ""
            what = "open with" if key == "opening_share" else "contain"
            warning = (
                f'{label}: {round(share * n)} of {n} DPO answers ({share:.0%}) {what} "{dpo[phrase_key]}" '
                f"(base: {base[key]['value']:.0%}{with_ref}): {consequence}"
            )
        return Row(figure, key, *pick, note=note, warning=warning)

    def _diversity_rows(self, t: Thresholds) -> list[Row]:
        if not self.diversity:
            return []
        base, dpo, ref = (self.diversity.get(k) for k in ("base", "dpo", "reference"))
        d2, b2 = dpo["distinct_2"]["value"], base["distinct_2"]["value"]
        distinct_warning = (
            f"Less diverse than base: distinct-2 {d2:.3f} against {b2:.3f}: DPO's answers share more of their wording."
            if d2 < b2 * (1 - t.distinct_2_drop)
            else None
        )
        rep_d, rep_b = dpo["repetition"]["value"], base["repetition"]["value"]
        repetition_warning = (
            f"Loops: {rep_d:.0%} of the 3-grams in a DPO answer repeat an earlier one of the same answer, on average "
            f"(base {rep_b:.0%})."
            if rep_d > rep_b + t.repetition_rise
            else None
        )
        pick = lambda key: [None if m is None else m[key] for m in (base, dpo, ref)]  # noqa: E731
        return [
            self._share_row(
                "opening_share",
                "top_opening",
                t.opening_share,
                "share of answers opening with the most common 3 words",
                "Collapse",
                "the model may answer many prompts with the same boilerplate.",
            ),
            self._share_row(
                "phrase_share",
                "top_phrase",
                t.phrase_share,
                "share of answers containing the most common 3 words anywhere",
                "Stock phrase",
                "the model puts the same words into answers on any topic. Read the answers.",
            ),
            Row("distinct-1 over all answers", "distinct_1", *pick("distinct_1")),
            Row("distinct-2 over all answers", "distinct_2", *pick("distinct_2"), warning=distinct_warning),
            Row(
                "repetition within an answer (repeated 3-grams)",
                "repetition",
                *pick("repetition"),
                warning=repetition_warning,
            ),
            Row("answer length (words)", "length_words", *pick("length_words"), digits=1),
        ]

    def _judge_rows(self, t: Thresholds) -> list[Row]:
        return self._verdict_rows(t) + self._judge_trust_rows(t)

    def _verdict_rows(self, t: Thresholds) -> list[Row]:
        """The judge's verdicts: win rates over base and against the reference answers, mean rewards."""
        j = self.judge
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

    def _judge_trust_rows(self, t: Thresholds) -> list[Row]:
        """How far to trust the judge: its accuracy on the held-out pairs, its order consistency, self-training."""
        j = self.judge
        acc = j["accuracy_on_pairs"]
        rows = []
        rows.append(
            Row(
                f"judge: accuracy on the {acc['pairs']} held-out pairs (how far to trust it)",
                "judge_accuracy",
                value=_ci_of(acc),
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
                    value=_ci_of(consistency),
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

    def warnings(self) -> list[str]:
        return [r.warning for r in self.rows() if r.warning]

    # -- serialization and rendering ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "thresholds"}
        out["summary"] = [asdict(r) for r in self.rows()]
        out["warnings"] = self.warnings()
        return out

    def headline(self, report: str) -> str:
        picked = {
            "preference_accuracy_per_token",
            "logp_per_token_chosen",
            "opening_share",
            "phrase_share",
            "distinct_2",
            "judge_win_rate_greedy",
            "judge_win_rate_reference",
            "judge_accuracy",
        }
        lines = [f"Report: {report} (and report.md). {self.pairs} held-out pairs; base -> DPO (reference answers):"]
        for row in self.rows():
            if row.key in picked:
                ref = f" ({fmt(row.reference, row.digits)})" if row.reference else ""
                figures = (
                    fmt(row.value, row.digits)
                    if row.value
                    else f"{fmt(row.base, row.digits)} -> {fmt(row.dpo, row.digits)}{ref}"
                )
                lines.append(f"  {row.figure}: {figures}" + (f"; {row.note}" if row.note else ""))
        warnings = self.warnings()
        lines += [f"WARNING: {w}" for w in warnings] or ["No warning raised."]
        return "\n".join(lines)


def summary_table(rows: list[Row] | list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the summary: what report.md, report.html and the model card print."""
    header = ["figure", "base", "DPO", "reference answers", "value / note"]
    cells = []
    for r in rows:
        r = r if isinstance(r, dict) else asdict(r)
        mark = " ⚠" if r.get("warning") else ""
        note = "; ".join(x for x in (fmt(r["value"], r.get("digits", 3)) if r.get("value") else "", r["note"]) if x)
        cells.append([r["figure"] + mark, *(fmt(r[k], r.get("digits", 3)) for k in ("base", "dpo", "reference")), note])
    return header, cells


def logged_scalars(rows: list[Row]) -> dict[str, float]:
    """Every summary figure as test/<key>/<column>[_low|_high] scalars, for the loggers."""
    out: dict[str, float] = {}
    for r in rows:
        for column in ("base", "dpo", "reference", "value"):
            e = getattr(r, column)
            if e is not None:
                out[f"test/{r.key}/{column}"] = e["value"]
                if e["ci_low"] != e["ci_high"]:
                    out[f"test/{r.key}/{column}_low"], out[f"test/{r.key}/{column}_high"] = e["ci_low"], e["ci_high"]
    out["test/warnings"] = float(sum(r.warning is not None for r in rows))
    return out


def _ci(model: dict[str, Any], key: str) -> Estimate:
    low, high = model.get(f"{key}_ci", (model[key], model[key]))
    return estimate(model[key], low, high)


def _ci_of(d: dict[str, Any]) -> Estimate:
    return estimate(d["value"], d["ci_low"], d["ci_high"])


def _win(w: dict[str, Any]) -> Estimate:
    return estimate(w["win_rate"], w["ci_low"], w["ci_high"])


def _equal_length(w: dict[str, Any]) -> str:
    """The win rate at equal length (head_to_head.length_controlled), where the evaluation measured it."""
    lc = w.get("length_controlled")
    return f"; at equal length {fmt(lc, 2)}" if lc else ""


def _wtl(w: dict[str, Any]) -> str:
    return f"{w['wins']}/{w['ties']}/{w['losses']}"
