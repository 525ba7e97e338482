"""Exact-match accuracy on held-out problems with reference answers (data=arithmetic, gsm8k, problems): greedy,
pass@K (one of K sampled answers right) and majority@K (the most common final answer of K right), for base and the
trained model on the same problems, each with its Wilson interval, and the paired exact test of their difference
(McNemar, on the greedy answers). The correctness rule is a reward function (`exact_match` by default)."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.records import read_lines
from ..core.statistics import mcnemar, proportion
from ..data.answers import as_number, final_answer
from .rows import Row

Correct = Callable[..., list[float | None]]  # a reward function: 1.0 right, 0.0 wrong (None: no answer to check)


@dataclass
class ModelAccuracy:
    """One model's answers to the held-out problems, judged right or wrong."""

    greedy: list[bool]
    sampled: list[list[bool]]  # K per problem
    majority: list[bool]

    def as_dict(self, confidence: float = 0.95) -> dict[str, Any]:
        k = len(self.sampled[0]) if self.sampled else 0
        out = {"greedy": _rate(self.greedy, confidence)}
        if k:
            out[f"pass_at_{k}"] = _rate([any(s) for s in self.sampled], confidence)
            out[f"majority_at_{k}"] = _rate(self.majority, confidence)
            out["sampled"] = _rate([c for s in self.sampled for c in s], confidence)
        return out


def _rate(values: Sequence[bool], confidence: float) -> dict[str, float]:
    return proportion(torch.tensor([float(v) for v in values], dtype=torch.float64), confidence).as_dict()


def majority_answer(texts: Sequence[str]) -> str | None:
    """The most common final answer among `texts` (numbers compared as numbers; ties: the first seen)."""
    finals = [final_answer(t) for t in texts]
    keys = [str(as_number(f)) if f is not None and as_number(f) is not None else f for f in finals]
    counts = Counter(k for k in keys if k is not None)
    if not counts:
        return None
    best = counts.most_common(1)[0][0]
    return finals[keys.index(best)]


def judge_answers(
    correct: Correct,
    prompts: Sequence[Any],
    greedy: Sequence[str],
    sampled: Sequence[Sequence[str]],
    answers: Sequence[Any],
) -> ModelAccuracy:
    """Each answer right or wrong by `correct` (called as a reward function, with the problems' `answer` column)."""

    def right(asked: Sequence[Any], texts: Sequence[str], references: Sequence[Any]) -> list[bool]:
        return [bool(v) for v in correct(prompts=list(asked), completions=list(texts), answer=list(references))]

    k = len(sampled[0]) if sampled else 0
    if not k:
        return ModelAccuracy(right(prompts, greedy, answers), [], [])
    each = lambda values: [v for v in values for _ in range(k)]  # noqa: E731 (one entry per sampled answer)
    flat = right(each(prompts), [text for texts in sampled for text in texts], each(answers))
    majority = [majority_answer(texts) for texts in sampled]
    return ModelAccuracy(
        greedy=right(prompts, greedy, answers),
        sampled=[flat[i * k : (i + 1) * k] for i in range(len(answers))],
        majority=right(prompts, [f"#### {m}" if m is not None else "" for m in majority], answers),
    )


def compare_accuracy(base: ModelAccuracy, dpo: ModelAccuracy, confidence: float = 0.95) -> dict[str, Any]:
    """Both models' figures and the paired test of the greedy difference on the same problems."""
    only_dpo = sum(d and not b for b, d in zip(base.greedy, dpo.greedy))
    only_base = sum(b and not d for b, d in zip(base.greedy, dpo.greedy))
    n = len(base.greedy)
    return {
        "problems": n,
        "samples": len(base.sampled[0]) if base.sampled else 0,
        "base": base.as_dict(confidence),
        "dpo": dpo.as_dict(confidence),
        "greedy_difference": {
            "value": (sum(dpo.greedy) - sum(base.greedy)) / max(n, 1),
            "dpo_only": only_dpo,
            "base_only": only_base,
            "p_value": mcnemar(only_dpo, only_base),
            "test": "exact McNemar (two-sided)",
        },
    }


def accuracy_rows(accuracy: dict[str, Any]) -> list[Row]:
    """The summary's rows: greedy accuracy (with the paired test of the difference), pass@K and majority@K."""
    n, k, diff = accuracy["problems"], accuracy["samples"], accuracy["greedy_difference"]
    test = (
        f"DPO {diff['value']:+.3f}: right where base was wrong on {diff['dpo_only']}, the reverse on "
        f"{diff['base_only']}; McNemar p = {diff['p_value']:.2g}"
    )
    rows = [Row(f"exact-match accuracy on the {n} held-out problems, greedy", "accuracy_greedy",
                accuracy["base"]["greedy"], accuracy["dpo"]["greedy"], note=test)]  # fmt: skip
    if k:
        temperature = accuracy.get("temperature")
        rows += [
            Row(f"pass@{k}: one of {k} answers sampled at temperature {temperature:g} right", f"pass_at_{k}",
                accuracy["base"][f"pass_at_{k}"], accuracy["dpo"][f"pass_at_{k}"]),
            Row(f"majority@{k}: the most common final answer of the {k} right", f"majority_at_{k}",
                accuracy["base"][f"majority_at_{k}"], accuracy["dpo"][f"majority_at_{k}"]),
        ]  # fmt: skip
    return rows


def compare_runs(first: Path, second: Path, confidence: float = 0.95) -> dict[str, Any]:
    """Two trained models' greedy accuracy on the same held-out problems (each evaluation's `accuracy.jsonl`), and
    McNemar's exact test of their difference: the comparison of arms (online against offline DPO)."""
    a, b = read_lines(Path(first) / "accuracy.jsonl"), read_lines(Path(second) / "accuracy.jsonl")
    if not a or [r["prompt"] for r in a] != [r["prompt"] for r in b]:
        raise ValueError(f"{first} and {second}: not the same held-out problems (accuracy.jsonl), or none")
    one, two = ModelAccuracy([r["dpo_right"] for r in a], [], []), ModelAccuracy([r["dpo_right"] for r in b], [], [])
    result = compare_accuracy(two, one, confidence)  # "dpo" is the first run, "base" the second
    return {"first": str(first), "second": str(second), "problems": result["problems"],
            "first_accuracy": result["dpo"]["greedy"], "second_accuracy": result["base"]["greedy"],
            "difference": result["greedy_difference"]}  # fmt: skip


# an operation between two numbers in a reference's working: "2 × 9 = 18", GSM8K's "<<48/2=24>>"
# (the right operand only looked at, so "2 + 3 + 4" is two; a range such as "3-4 hours" outside GSM8K's steps is not)
OPERATION = re.compile(r"[\d)]\s*([-+−×xX*÷/])\s*(?=\(?[\d.])")
SYMBOLS = {"−": "-", "x": "×", "X": "×", "*": "×", "/": "÷"}


def operations(reference: str) -> str:
    """A problem's kind: the operations of its reference answer's working, in order ("×,-" for "2 × 9 = 18.
    18 - 15 = 3. The answer is 3."; "÷,+" for GSM8K's "<<48/2=24>> ... <<48+24=72>>"), "none" without working."""
    working = re.split(r"####|[Tt]he answer is", str(reference))[0]
    steps = " ".join(re.findall(r"<<([^>]*)>>", working))  # GSM8K: its calculator's steps, once each
    working = steps or re.sub(r"(\d)-(?=\d)", r"\1 to ", working)
    found = [SYMBOLS.get(op, op) for op in OPERATION.findall(working)]
    return ",".join(found) or "none"


def accuracy_by_kind(evaluations: Sequence[Path]) -> list[dict[str, Any]]:
    """Greedy accuracy by kind of problem (`operations` of the reference answer) for base (from the first
    evaluation) and each evaluation, on the same held-out problems: where each arm's right answers are."""
    runs = [read_lines(Path(e) / "accuracy.jsonl") for e in evaluations]
    if not runs[0] or any([r["prompt"] for r in run] != [r["prompt"] for r in runs[0]] for run in runs):
        raise ValueError(f"{', '.join(map(str, evaluations))}: not the same held-out problems (accuracy.jsonl)")
    kinds = [operations(row["answer"]) for row in runs[0]]
    table = []
    for kind in sorted(set(kinds), key=lambda k: (k.count(",") if k != "none" else -1, k)):
        at = [i for i, k in enumerate(kinds) if k == kind]
        row = {"kind": kind, "problems": len(at), "base": sum(bool(runs[0][i]["base_right"]) for i in at)}
        row.update({str(e): sum(bool(run[i]["dpo_right"]) for i in at) for e, run in zip(evaluations, runs)})
        table.append(row)
    return table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Two evaluations' greedy exact-match accuracy on the same held-out problems, and McNemar's "
        "exact test of the difference: python -m dpo_lightning.evaluation.accuracy <run A>/eval <run B>/eval; "
        "with --by-kind, any number of evaluations' right answers by kind of problem (the operations of the "
        "reference's working), base's from the first"
    )
    p.add_argument("evaluations", type=Path, nargs="+")
    p.add_argument("--by-kind", action="store_true", help="right answers by kind of problem, base and each evaluation")
    args = p.parse_args(argv)
    if args.by_kind:
        table = accuracy_by_kind(args.evaluations)
        names = ["base", *map(str, args.evaluations)]
        print("| kind | problems | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
        for row in [*table, {"kind": "all", **{k: sum(r[k] for r in table) for k in ["problems", *names]}}]:
            print(f"| {row['kind']} | {row['problems']} | " + " | ".join(str(row[n]) for n in names) + " |")
        return
    if len(args.evaluations) != 2:
        p.error("two evaluations to compare (or --by-kind)")
    first, second = args.evaluations
    r = compare_runs(first, second)
    f, s, d = r["first_accuracy"], r["second_accuracy"], r["difference"]
    print(
        f"{first}: {f['value']:.3f} [{f['ci_low']:.3f}, {f['ci_high']:.3f}]; {second}: {s['value']:.3f} "
        f"[{s['ci_low']:.3f}, {s['ci_high']:.3f}] on {r['problems']} problems; difference {d['value']:+.3f}: right "
        f"only in the first on {d['dpo_only']}, only in the second on {d['base_only']}; McNemar p = {d['p_value']:.3g}"
    )


if __name__ == "__main__":
    main()
