"""The one result of an evaluation. `evaluate()` fills an `EvaluationResult`; its `rows()` are the summary every
output renders (report.md and report.html, the console headline, the model card, the loggers), and its
`warnings()` are the plain-words alarms raised by the figures. A new figure is one more `Row` (rows.py): here, or
in judge_rows.py for the judge's.

metrics.json is `to_dict()`: the detailed sections (keys as before) plus `summary` (the rows) and `warnings`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .accuracy import accuracy_rows
from .judge_rows import judge_rows
from .records import SCHEMA
from .rows import Row, Thresholds, ci, ci_of, estimate, fmt


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
    accuracy: dict[str, Any] | None = None  # on held-out problems with reference answers (evaluation/accuracy.py)
    thresholds: Thresholds = field(default_factory=Thresholds)

    # -- the summary -----------------------------------------------------------------------------------------------
    def rows(self) -> list[Row]:
        b, d, t = self.base, self.dpo, self.thresholds
        rows = accuracy_rows(self.accuracy) if self.accuracy else []
        rows += [
            Row(
                "preference accuracy, per-token log-prob (chosen above rejected)",
                "preference_accuracy_per_token",
                ci(b, "preference_accuracy_normalized"),
                ci(d, "preference_accuracy_normalized"),
            ),
            Row(
                "preference accuracy, summed log-prob",
                "preference_accuracy",
                ci(b, "preference_accuracy"),
                ci(d, "preference_accuracy"),
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
                ci_of(self.implicit_reward["accuracy"]),
            )
        )
        if self.kl:
            rows.append(Row("KL(DPO || base) per token", "kl_per_token", None, estimate(self.kl["kl_per_token"])))
        rows += self._diversity_rows(t)
        if self.judge:
            rows += judge_rows(self.judge, t)
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
        rows = [
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
        if "degenerate" in dpo:  # records written before the check have no such figure
            rows.append(self._broken_row(t, base, dpo, ref))
        return rows

    @staticmethod
    def _broken_row(t: Thresholds, base: dict, dpo: dict, ref: dict | None) -> Row:
        broken_d, broken_b = (m.get("degenerate", {}).get("value", 0.0) for m in (dpo, base))
        warning = (
            f"Broken answers: {broken_d:.0%} of DPO's answers are empty, one character or word repeated, a loop or "
            f"all one answer (base {broken_b:.0%}), e.g. {'; '.join(dpo.get('problems', [])[:2])}. Read the answers."
            if broken_d > broken_b + t.degenerate_rise
            else None
        )
        figures = [None if m is None else m.get("degenerate") for m in (base, dpo, ref)]
        return Row("broken answers (empty, a loop, one token repeated)", "degenerate", *figures, warning=warning)

    def warnings(self) -> list[str]:
        return [r.warning for r in self.rows() if r.warning]

    # -- serialization and rendering ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """metrics.json (evaluation/records.py reads it back, as an `EvaluationRecord`)."""
        sections = {k: v for k, v in asdict(self).items() if k != "thresholds" and (k != "accuracy" or v is not None)}
        out = {"schema": SCHEMA, **sections}
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
            "accuracy_greedy",
        }
        if self.accuracy:
            picked.add(f"pass_at_{self.accuracy['samples']}")
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
