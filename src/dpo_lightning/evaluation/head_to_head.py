"""Two evaluations' answers to the same held-out prompts, judged against each other: the direct comparison of two
trained models (online against offline DPO, one recipe against another), where each evaluation alone only says how
often its model beats its own base.

    python -m dpo_lightning.evaluation.head_to_head <run A>/eval <run B>/eval        # greedy answers, A's judge
    python -m dpo_lightning.evaluation.head_to_head <A>/eval <B>/eval --judge <reward model folder> --field dpo_sampled

The judge is the reward model A's evaluation used (its metrics.json names it) unless `--judge` gives another. The
prompts must be the same, in the same order (the same held-out data and `generation.num_prompts`); a row that
differs is named. Prints A's wins, ties and losses against B and its win rate (a tie counting half) with a Wilson
interval, and each side's mean reward with a BCa interval; then how often the judge picked the longer answer, and
its win rate at equal length (a logistic fit of its verdicts on the length difference, read at 0, as AlpacaEval 2's
length-controlled win rate): where two models differ mostly in length, a reward model's verdict often is length.
`--out` also writes them as JSON, with the judge's verdict on each prompt (write it to
`<A>/eval/head_to_head.json` and `blind --score` checks a reader against it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.statistics import bca, wilson
from ..judges.reward import RewardJudge
from .records import GENERATIONS, EvaluationRecord, read_generations
from .verdicts import win_rate

HEAD_TO_HEAD = "head_to_head.json"  # where online.compare_to writes the result, beside the evaluation it scores


def paired_answers(first: Path, second: Path, field: str) -> tuple[list[Any], list[str], list[str]]:
    """The prompts (as the model saw them: chat turns where the evaluation recorded them) and each side's `field`."""
    a, b = read_generations(first), read_generations(second)
    if len(a) != len(b):
        raise ValueError(f"{first}/{GENERATIONS} has {len(a)} prompts, {second}/{GENERATIONS} {len(b)}: not the same")
    for line, (x, y) in enumerate(zip(a, b), start=1):
        if x["prompt"] != y["prompt"]:
            raise ValueError(f"{second}/{GENERATIONS} line {line}: prompt {y['prompt'][:60]!r} is not {first}'s")
        for row, where in ((x, first), (y, second)):
            if field not in row:
                raise ValueError(f"{where}/{GENERATIONS} line {line}: no field {field!r}")
    prompts = [x.get("prompt_turns") or y.get("prompt_turns") or x["prompt"] for x, y in zip(a, b)]
    return prompts, [x[field] for x in a], [y[field] for y in b]


def evaluation_judge(eval_dir: Path) -> str:
    """The reward model an evaluation was judged by (from its metrics.json)."""
    record = EvaluationRecord.read(eval_dir)
    if record.judge_kind != "reward model":
        raise ValueError(f"{eval_dir}/metrics.json: its judge is not a reward model folder; give --judge <folder>")
    return record.judge_model


def head_to_head(
    first: Path,
    second: Path,
    judge: Any,
    field: str = "dpo_greedy",
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """`first`'s answers against `second`'s, prompt by prompt, by `judge` (anything with `compare`); `outcomes` are
    the judge's verdicts per prompt (1 first better, 0 worse, 0.5 tie), which a blind reading is checked against."""
    prompts, a, b = paired_answers(Path(first), Path(second), field)
    comparison = judge.compare(prompts, a, b)
    result = win_rate(comparison, resamples, confidence, seed, names=("first", "second"))
    outcomes = comparison.outcomes.tolist()
    return {"first": str(first), "second": str(second), "field": field, "judge": getattr(judge, "name", ""), **result,
            "longer_wins": longer_wins(a, b, outcomes, confidence),
            "length_controlled": length_controlled(a, b, outcomes, confidence, resamples, seed),
            "outcomes": outcomes}  # fmt: skip


def longer_wins(first: list[str], second: list[str], outcomes: list[float], confidence: float = 0.95) -> dict:
    """How often the judge's pick is the longer answer (in words), over the prompts it decided whose answers differ
    in length: near 1 when two models differ mostly in length, its verdict may be measuring length."""
    n_first, n_second = [len(x.split()) for x in first], [len(x.split()) for x in second]
    decided = [(o == 1) == (x > y) for x, y, o in zip(n_first, n_second, outcomes) if o != 0.5 and x != y]
    interval = wilson(sum(decided), len(decided), confidence)
    words = [sum(n) / max(len(n), 1) for n in (n_first, n_second)]
    return {"count": sum(decided), "of": len(decided), "rate": interval.value, "ci_low": interval.low,
            "ci_high": interval.high, "mean_words_first": words[0], "mean_words_second": words[1]}  # fmt: skip


def length_controlled(
    first: list[str],
    second: list[str],
    outcomes: list[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
    ridge: float = 1.0,
) -> dict[str, float]:
    """The judge's win rate at equal length: a logistic fit of its verdicts (a tie as half) on the length difference,
    tanh(difference in words / its standard deviation), read at a difference of 0 (AlpacaEval 2's length-controlled
    win rate, without its per-instruction term), with a BCa bootstrap interval over prompts; `slope` is the fit's
    length coefficient (0: the verdicts ignore length). `ridge`: a normal prior of scale 1/sqrt(ridge) on both
    coefficients, so that verdicts that separate by length (every longer answer wins) give a finite fit and a modest
    extrapolation to equal length, not 0 or 1. Every pair the same length: the plain win rate."""
    o = np.asarray(outcomes, dtype=np.float64)
    difference = np.array([len(x.split()) - len(y.split()) for x, y in zip(first, second)], dtype=np.float64)
    if o.size == 0 or difference.std() == 0:
        rate = wilson(float(o.sum()), int(o.size), confidence)
        return {**rate.as_dict(), "slope": 0.0}
    x = np.tanh(difference / difference.std())

    def at_equal_length(o: np.ndarray, x: np.ndarray) -> float:
        return float(1 / (1 + np.exp(-logistic_fit(o, x, ridge)[0])))

    low, high = bca((o, x), at_equal_length, resamples, confidence, seed, paired=True, vectorized=False)
    slope = logistic_fit(o, x, ridge)[1]
    return {"value": at_equal_length(o, x), "ci_low": low, "ci_high": high, "slope": float(slope)}


def logistic_fit(o: np.ndarray, x: np.ndarray, ridge: float, steps: int = 50) -> np.ndarray:
    """(intercept, slope) of P(win) = sigmoid(intercept + slope * x) by Newton's method, on soft outcomes in [0, 1],
    with an L2 penalty ridge / 2 * |w|^2 on both."""
    features = np.stack([np.ones_like(x), x], axis=1)
    w = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-features @ w))
        gradient = features.T @ (o - p) - ridge * w
        hessian = (features.T * (p * (1 - p))) @ features + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        w = w + step
        if np.abs(step).max() < 1e-10:
            break
    return w


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first", type=Path, help="an evaluation's output folder (<run>/eval): the model scored")
    p.add_argument("second", type=Path, help="... and the one it is judged against, on the same prompts")
    p.add_argument("--judge", help="a reward model folder (default: the judge of the first evaluation)")
    p.add_argument("--field", default="dpo_greedy", help="the generations.jsonl field compared (e.g. dpo_sampled)")
    p.add_argument("--confidence", type=float, default=0.95)
    p.add_argument("--out", type=Path, help="also write the result here as JSON")
    args = p.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    judge = RewardJudge(args.judge or evaluation_judge(args.first), device=device)
    r = head_to_head(args.first, args.second, judge, args.field, args.confidence)
    print(f"{args.first} over {args.second} ({args.field}, judge {r['judge']}): {r['wins']}/{r['ties']}/{r['losses']}"
          f" (W/T/L), win rate {r['win_rate']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]")  # fmt: skip
    longer = r["longer_wins"]
    print(
        f"the judge picked the longer answer on {longer['count']} of the {longer['of']} prompts it decided whose "
        f"answers differ in length, {longer['rate']:.2f} (mean words: {longer['mean_words_first']:.1f} against "
        f"{longer['mean_words_second']:.1f})"
    )
    lc = r["length_controlled"]
    print(f"at equal length (length-controlled): {lc['value']:.2f} [{lc['ci_low']:.2f}, {lc['ci_high']:.2f}], length "
          f"coefficient {lc['slope']:.2f}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
