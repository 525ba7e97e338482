"""The pieces of one online round that make its preference pairs: K answers sampled per prompt from the policy, a
score for each from the judge, and the pairs built from those scores. Each is written to the round's folder as
JSON lines, one line per prompt, appended chunk by chunk, so a stopped round resumes where it stopped and gives
the same lines as one that never stopped (every chunk's sampling is seeded by its position).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core import seeds
from ...core.records import (
    RoundPair,
    Sample,
    append_samples,
    append_scores,
    atomic_lines,
    read_lines,
    read_samples,
    read_scores,
)
from ...judges.base import score
from .samplers import BACKENDS

__all__ = [
    "PairRule",
    "RoundPair",
    "Sampling",
    "atomic_lines",
    "build_pairs",
    "read_lines",
    "sample_answers",
    "score_answers",
]


@dataclass
class Sampling:
    """`online.sampling`: how the policy answers each prompt (`samples_per_prompt` answers)."""

    samples_per_prompt: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 64
    batch_size: int = 16  # generated rows per chunk (a chunk is the unit of resume)
    backend: str = "hf"  # hf | vllm | auto (online_samplers)
    vllm: dict = field(default_factory=dict)  # vllm.LLM's engine arguments, for backend vllm

    @property
    def prompts_per_chunk(self) -> int:
        return max(1, self.batch_size // self.samples_per_prompt)

    def __post_init__(self) -> None:
        if self.samples_per_prompt < 2:
            raise ValueError(f"online.sampling.samples_per_prompt must be >= 2 (a pair), got {self.samples_per_prompt}")
        if self.backend not in BACKENDS:
            raise ValueError(f"online.sampling.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")


@dataclass
class PairRule:
    """`online.pairs`: best against worst answer of each prompt (as RLHFlow's iterative DPO), kept when their scores
    differ by more than `min_gap`; a prompt whose answers all tie (all right, or all wrong, under exact_match) or are
    all the same text gives no pair, and is counted. With `data_chosen`, the data's chosen answer to the prompt is
    ranked among the policy's answers (SPIN's anchor); with `chosen=data`, it is always the chosen side, against
    the policy's worst answer (offline DPO on fixed data: a correct worked answer against a wrong sample). Each pair
    says where its sides came from, and carries the data row's columns (a problem's `answer`). `max_pairs` keeps
    at most that many of a round's pairs, a seeded choice (arms of an experiment at an equal number of pairs)."""

    min_gap: float = 0.0
    data_chosen: bool = False
    chosen: str = "best"  # best | data
    max_pairs: int | None = None

    def __post_init__(self) -> None:
        if self.chosen not in ("best", "data"):
            raise ValueError(f"online.pairs.chosen must be best or data, got {self.chosen!r}")
        if self.max_pairs is not None and self.max_pairs < 1:
            raise ValueError(f"online.pairs.max_pairs must be null or >= 1, got {self.max_pairs}")

    @property
    def ranks_data(self) -> bool:
        return self.data_chosen or self.chosen == "data"

    def candidates(self, sample: dict[str, Any], data_answer: str | None) -> dict[str, Any]:
        """The answers the judge ranks: the policy's, and with the data's answer in play that one last."""
        if not self.ranks_data:
            return sample
        if data_answer is None:
            raise ValueError(f"online.pairs: no chosen answer in the data for prompt {sample['prompt']!r}")
        k = len(sample["answers"])
        return {**sample, "answers": [*sample["answers"], data_answer], "sources": ["policy"] * k + ["data"]}

    def build(
        self,
        prompt: Any,
        answers: list[str],
        scores: list[float],
        sources: list[str] | None = None,
        columns: dict[str, Any] | None = None,
    ) -> RoundPair | None:
        if self.chosen == "data":  # the data's answer (last) against the policy's worst
            best = len(answers) - 1
            worst = min(range(best), key=lambda i: (scores[i], i))
        else:
            best = max(range(len(answers)), key=lambda i: (scores[i], -i))
            worst = min(range(len(answers)), key=lambda i: (scores[i], i))
        if scores[best] - scores[worst] <= self.min_gap or answers[best].strip() == answers[worst].strip():
            return None
        chat = not isinstance(prompt, str)
        wrap = (lambda text: [{"role": "assistant", "content": text}]) if chat else (lambda text: text)  # noqa: E731
        return RoundPair(
            prompt,
            wrap(answers[best]),
            wrap(answers[worst]),
            scores[best],
            scores[worst],
            sources[best] if sources else None,
            sources[worst] if sources else None,
            dict(columns or {}),
        )


def chunks(total: int, size: int, done: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of the chunks of `size` rows after the `done` rows already written."""
    for start in range(done, total, size):
        yield start, min(start + size, total)


def sample_answers(
    sampler: Callable[[list[list[int]], int], list[list[str]]],
    prompts: list[Any],
    prompt_ids: list[list[int]],
    sampling: Sampling,
    out: Path,
    seed: int,
    on_chunk: Callable[[int], None] = lambda index: None,
) -> list[list[str]]:
    """K answers per prompt (`out`: samples.jsonl, one line per prompt) from `sampler` (online_samplers: the policy
    in memory, or vLLM), from the rows already there onwards. A chunk is `batch_size // K` prompts, seeded by its
    first prompt's index."""
    done = len(read_lines(out))
    for index, (start, stop) in enumerate(chunks(len(prompts), sampling.prompts_per_chunk, done)):
        answers = sampler(prompt_ids[start:stop], seeds.generation_batch(seed, start))
        append_samples(out, [Sample(prompts[i], answers[i - start]) for i in range(start, stop)])
        on_chunk(index)
    return [sample.answers for sample in read_samples(out)]


def score_answers(
    judge: Any,
    samples: list[dict[str, Any]],
    out: Path,
    per_chunk: int,
    on_chunk: Callable[[int], None] = lambda index: None,
) -> list[list[float]]:
    """The judge's score of every answer (`out`: scores.jsonl, one line per prompt). A judge that scores answers
    (a reward model) scores each; a pairwise judge (the LLM judge) compares every two answers of a prompt, in both
    orders, and an answer's score is its share of wins (a tie counting half)."""
    done = len(read_lines(out))
    for index, (start, stop) in enumerate(chunks(len(samples), per_chunk, done)):
        append_scores(out, _score(judge, samples[start:stop]))
        on_chunk(index)
    return read_scores(out)


def _score(judge: Any, samples: list[dict[str, Any]]) -> list[list[float]]:
    if hasattr(judge, "score"):
        prompts = [s["prompt"] for s in samples for _ in s["answers"]]
        names = set.intersection(*(set(s.get("columns") or {}) for s in samples)) if samples else set()
        columns = {n: [s["columns"][n] for s in samples for _ in s["answers"]] for n in sorted(names)}
        flat = score(judge, prompts, [a for s in samples for a in s["answers"]], columns).tolist()
        out, at = [], 0
        for s in samples:
            out.append(flat[at : at + len(s["answers"])])
            at += len(s["answers"])
        return out
    result = []
    for s in samples:  # round robin: every unordered pair of answers once (the judge asks both orders itself)
        n = len(s["answers"])
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
        outcomes = judge.compare(
            [s["prompt"]] * len(pairs), [s["answers"][i] for i, _ in pairs], [s["answers"][j] for _, j in pairs]
        ).outcomes.tolist()
        wins = [0.0] * n
        for (i, j), o in zip(pairs, outcomes):
            wins[i] += o
            wins[j] += 1 - o
        result.append([w / max(1, n - 1) for w in wins])
    return result


def build_pairs(
    samples: list[dict[str, Any]],
    scores: list[list[float]],
    rule: PairRule,
    report: dict[str, Any] | None = None,
    seed: int = 0,
) -> list[RoundPair]:
    """The round's pairs, one at most per prompt; `report` (when given) counts the prompts that gave none, and why:
    every answer tied (at which score), a score missing (the judge could not score an answer), all one text."""
    pairs, no_pair = [], Counter()
    for sample, prompt_scores in zip(samples, scores):
        if any(not math.isfinite(x) for x in prompt_scores):
            no_pair["unscored"] += 1
            continue
        pair = rule.build(
            sample["prompt"], sample["answers"], prompt_scores, sample.get("sources"), sample.get("columns")
        )
        if pair is not None:
            pairs.append(pair)
        elif max(prompt_scores) - min(prompt_scores) <= rule.min_gap:
            no_pair[f"all tied at {max(prompt_scores):g}" if len(set(prompt_scores)) == 1 else "within min_gap"] += 1
        else:
            no_pair["same text"] += 1
    kept = pairs
    if rule.max_pairs is not None and len(pairs) > rule.max_pairs:  # a seeded choice, in the prompts' order
        chosen = sorted(random.Random(seed).sample(range(len(pairs)), rule.max_pairs))
        kept = [pairs[i] for i in chosen]
    if report is not None:
        report.update(prompts=len(samples), pairs=len(kept), pairs_before_cap=len(pairs), no_pair=dict(no_pair))
    return kept
