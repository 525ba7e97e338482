"""The pieces of an evaluation's summary: a `Row` (one figure for base, DPO and the reference answers, with its
interval, note and warning), the `Thresholds` that turn figures into warnings, and the two renderings every output
shares: `summary_table` (report.md, report.html, the model card) and `logged_scalars` (the loggers)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Estimate = dict[str, float]  # {"value", "ci_low", "ci_high"}


@dataclass
class Thresholds:
    """When a figure turns into a warning (eval.yaml `warn:`)."""

    opening_share: float = 0.2  # DPO's most common opening starts more than this share of its answers (and > base)
    phrase_share: float = 0.3  # DPO's most common 3 words are in more than this share of its answers (and > base)
    distinct_2_drop: float = 0.05  # DPO's distinct-2 is below base's by more than this share of base's
    repetition_rise: float = 0.05  # DPO's mean within-answer repetition is above base's by more than this
    degenerate_rise: float = 0.05  # DPO's share of broken answers (core/sample_checks.py) is above base's by more
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


def ci(model: dict[str, Any], key: str) -> Estimate:
    low, high = model.get(f"{key}_ci", (model[key], model[key]))
    return estimate(model[key], low, high)


def ci_of(d: dict[str, Any]) -> Estimate:
    return estimate(d["value"], d["ci_low"], d["ci_high"])
