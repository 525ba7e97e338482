"""The pieces of one online round that make its preference pairs: K answers sampled per prompt from the policy, a
score for each from the judge, and the pairs built from those scores. Each is written to the round's folder as
JSON lines, one line per prompt, appended chunk by chunk, so a stopped round resumes where it stopped and gives
the same lines as one that never stopped (every chunk's sampling is seeded by its position).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.records import append_lines, atomic_lines, read_lines
from .samplers import BACKENDS

__all__ = [
    "PairRule",
    "Sampling",
    "append_lines",
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
    differ by more than `min_gap`; a prompt whose answers all tie (or are all the same text) gives no pair. With
    `data_chosen`, the data's chosen answer to the prompt is ranked among the policy's answers: a pair may then set
    the data's answer against the policy's worst (as SPIN pairs them), and says where each side came from."""

    min_gap: float = 0.0
    data_chosen: bool = False

    def candidates(self, sample: dict[str, Any], data_answer: str | None) -> dict[str, Any]:
        """The answers the judge ranks: the policy's, and with `data_chosen` the data's chosen answer last."""
        if not self.data_chosen:
            return sample
        if data_answer is None:
            raise ValueError(f"online.pairs.data_chosen: no chosen answer in the data for prompt {sample['prompt']!r}")
        k = len(sample["answers"])
        return {**sample, "answers": [*sample["answers"], data_answer], "sources": ["policy"] * k + ["data"]}

    def build(
        self, prompt: Any, answers: list[str], scores: list[float], sources: list[str] | None = None
    ) -> dict[str, Any] | None:
        best = max(range(len(answers)), key=lambda i: (scores[i], -i))
        worst = min(range(len(answers)), key=lambda i: (scores[i], i))
        if scores[best] - scores[worst] <= self.min_gap or answers[best].strip() == answers[worst].strip():
            return None
        chat = not isinstance(prompt, str)
        wrap = (lambda text: [{"role": "assistant", "content": text}]) if chat else (lambda text: text)  # noqa: E731
        return {
            "prompt": prompt,
            "chosen": wrap(answers[best]),
            "rejected": wrap(answers[worst]),
            "chosen_score": scores[best],
            "rejected_score": scores[worst],
            **({"chosen_source": sources[best], "rejected_source": sources[worst]} if sources else {}),
        }


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
        answers = sampler(prompt_ids[start:stop], seed + start)
        append_lines(out, [{"prompt": prompts[i], "answers": answers[i - start]} for i in range(start, stop)])
        on_chunk(index)
    return [row["answers"] for row in read_lines(out)]


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
        part = samples[start:stop]
        append_lines(out, [{"scores": scores} for scores in _score(judge, part)])
        on_chunk(index)
    return [row["scores"] for row in read_lines(out)]


def _score(judge: Any, samples: list[dict[str, Any]]) -> list[list[float]]:
    if hasattr(judge, "score"):
        prompts = [s["prompt"] for s in samples for _ in s["answers"]]
        flat = judge.score(prompts, [a for s in samples for a in s["answers"]]).tolist()
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


def build_pairs(samples: list[dict[str, Any]], scores: list[list[float]], rule: PairRule) -> list[dict[str, Any]]:
    pairs = []
    for sample, prompt_scores in zip(samples, scores):
        if any(not math.isfinite(x) for x in prompt_scores):
            continue
        pair = rule.build(sample["prompt"], sample["answers"], prompt_scores, sample.get("sources"))
        if pair is not None:
            pairs.append(pair)
    return pairs
