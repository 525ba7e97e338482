"""Reward functions as judges (`judge=function`): plain callables that score a completion by a rule that cannot be
wrong, such as the final answer of a problem with a known one, as TRL's `reward_funcs` do.

A reward function is called as `fn(prompts=[...], completions=[...], **columns)`, where `columns` are the data
row's other fields (e.g. `answer`), one list entry per completion, and returns one float per completion, or None
where it cannot score that one (counted, and the judge's score is then NaN unless another function scored it).
`FunctionJudge` sums the functions' rewards with `weights` (TRL's `reward_weights`) and answers `score` and
`compare` like any judge. A function given as `{_target_: mypkg.rewards.fn, <keyword>: <value>}` gets those
keywords (e.g. `format`'s `pattern`).

Built in:
- `exact_match`: 1 when the completion's final answer equals the row's `answer`, else 0 (None without an
  answer). The final answer is the text after the last "####", else after the last "the answer is" / "answer:",
  else the last number of the completion; numbers are compared as numbers (thousands commas, a currency sign, a
  unit after the number, a unicode minus and trailing zeros tolerated: "$1,200.50 dollars" = 1200.5). With
  `math-verify` installed, LaTeX answers (\\boxed{...}, \\frac, ...) are compared by it instead.
- `format`: 1 when the completion matches a regular expression (by default: it shows a worked step such as
  "12 + 6 = 18"), else 0.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
from hydra.utils import get_method
from torch import Tensor

from ..data.answers import LATEX, final_answer, same_answer
from .base import Columns, Comparison, outcomes_from_scores

RewardFunction = Callable[..., list[float | None]]


def _math_verify(completion: str, reference: str) -> bool | None:
    """math-verify's verdict on LaTeX answers, where it is installed (None: not installed)."""
    if importlib.util.find_spec("math_verify") is None:
        return None
    from math_verify import parse, verify

    return bool(verify(parse(reference), parse(completion)))


def exact_match(
    prompts: Sequence[Any], completions: Sequence[str], answer: Sequence[Any] | None = None, **columns: Any
) -> list[float | None]:
    """1.0 where the completion's final answer is the row's `answer`, else 0.0; None for a row without one."""
    answers = answer if answer is not None else [None] * len(completions)
    out: list[float | None] = []
    for completion, reference in zip(completions, answers):
        if reference is None or str(reference).strip() == "":
            out.append(None)
            continue
        reference = str(reference)
        if LATEX.search(reference) or LATEX.search(completion):
            verdict = _math_verify(completion, reference)
            if verdict is not None:
                out.append(float(verdict))
                continue
        expected, given = final_answer(reference) or reference.strip(), final_answer(completion)
        out.append(float(given is not None and same_answer(given, expected)))
    return out


WORKED_STEP = r"\d\s*[-+*/×x÷]\s*\d[\d.,]*\s*="  # an arithmetic step written out: "12 + 6 = ..."


def format(
    prompts: Sequence[Any], completions: Sequence[str], pattern: str = WORKED_STEP, **columns: Any
) -> list[float | None]:  # noqa: A001 (TRL's name for a format reward)
    """1.0 where the completion matches `pattern` (a regular expression, searched), else 0.0."""
    compiled = re.compile(pattern)
    return [float(compiled.search(c) is not None) for c in completions]


def as_function(spec: Any) -> tuple[str, RewardFunction]:
    """(name, callable) of a reward function given as a callable, a dotted path, or a config node
    `{_target_: path, **keywords}` (the keywords bound to it)."""
    if callable(spec):
        return getattr(spec, "__name__", repr(spec)), spec
    if isinstance(spec, str):
        return spec.rsplit(".", 1)[-1], get_method(spec)
    if hasattr(spec, "get") and spec.get("_target_"):
        keywords = {k: v for k, v in dict(spec).items() if k != "_target_"}
        target = str(spec["_target_"])
        fn = get_method(target)
        name = target.rsplit(".", 1)[-1] + (
            f"({', '.join(f'{k}={v!r}' for k, v in keywords.items())})" if keywords else ""
        )
        return name, functools.partial(fn, **keywords) if keywords else fn
    raise ValueError(f"judge.functions: {spec!r} is not a function, a dotted path or {{_target_: <path>}}")


class FunctionJudge:
    """Scores completions with reward functions (weighted sum); two answers compare by their scores."""

    kind = "reward functions"

    def __init__(
        self,
        functions: Sequence[Any],
        weights: Sequence[float] | None = None,
        tie_tolerance: float = 0.0,
        device: Any = None,
        batch_size: int | None = None,
    ) -> None:
        if not functions:
            raise ValueError("judge.functions: give at least one reward function")
        named = [as_function(f) for f in functions]
        self.names = [n for n, _ in named]
        self.functions = [f for _, f in named]
        self.weights = [1.0] * len(named) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(self.functions):
            raise ValueError(f"judge.weights: {len(self.weights)} weights for {len(self.functions)} functions")
        self.tie_tolerance = tie_tolerance
        self.name = " + ".join(n if w == 1 else f"{w:g} × {n}" for n, w in zip(self.names, self.weights))
        self.unscored: Counter = Counter()  # completions a function could not score (returned None), by function

    def score(self, prompts: Sequence[Any], answers: Sequence[str], columns: Columns | None = None) -> Tensor:
        columns = {k: list(v) for k, v in (columns or {}).items()}
        n = len(answers)
        for key, values in columns.items():
            if len(values) != n:
                raise ValueError(f"column {key!r} has {len(values)} values for {n} completions")
        total = torch.zeros(n, dtype=torch.float64)
        scored = torch.zeros(n, dtype=torch.bool)
        for name, fn, weight in zip(self.names, self.functions, self.weights):
            rewards = fn(prompts=list(prompts), completions=list(answers), **columns)
            for i, value in enumerate(_checked(name, rewards, n)):
                if value is None:
                    self.unscored[name] += 1
                    continue
                total[i] += weight * value
                scored[i] = True
        return total.masked_fill(~scored, math.nan)

    def compare(
        self, prompts: Sequence[Any], first: Sequence[str], second: Sequence[str], columns: Columns | None = None
    ) -> Comparison:
        """Higher score wins; a completion no function could score ties (counted in `unscored`)."""
        a, b = self.score(prompts, first, columns), self.score(prompts, second, columns)
        outcomes = outcomes_from_scores(a.nan_to_num(0.0), b.nan_to_num(0.0), self.tie_tolerance)
        unscored = a.isnan() | b.isnan()
        return Comparison(outcomes.masked_fill(unscored, 0.5), a, b)


def _checked(name: str, rewards: Any, n: int) -> list[float | None]:
    """A function's rewards, or a clear error naming it: one per completion, each a finite number or None."""
    if rewards is None or isinstance(rewards, (str, bytes)) or not hasattr(rewards, "__len__"):
        raise ValueError(f"reward function {name} returned {type(rewards).__name__}, not one reward per completion")
    rewards = list(rewards.tolist() if isinstance(rewards, Tensor) else rewards)
    if len(rewards) != n:
        raise ValueError(f"reward function {name} returned {len(rewards)} rewards for {n} completions")
    out: list[float | None] = []
    for i, value in enumerate(rewards):
        if value is None:
            out.append(None)
            continue
        if not isinstance(value, (int, float)):  # (a bool is a number: True is 1.0)
            raise ValueError(
                f"reward function {name} returned {value!r} ({type(value).__name__}) for completion {i}: "
                "expected a number or None"
            )
        if not math.isfinite(value):
            raise ValueError(
                f"reward function {name} returned {value} for completion {i}: expected a finite number "
                "(None for a completion it cannot score)"
            )
        out.append(float(value))
    return out
