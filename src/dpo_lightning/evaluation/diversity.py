"""Collapse and diversity of a set of generated answers, the figures that catch a policy that has collapsed into
boilerplate (the same opening on many prompts, a small shared vocabulary, loops inside an answer).

Words are lower-cased runs of letters, digits and apostrophes, so "I'm unsure," and "i'm unsure" are the same
(`core/sample_checks.py`, where the words, the repetition and the checks of broken answers live: the sample
generations during training run the same checks).

- **opening share**: the most common first `n` words (default 3) over all answers, and the share of answers that
  open with it (Wilson interval). Hand-written references open with one phrase a few percent of the time; a
  collapsed policy opens a third of its answers alike.
- **phrase share**: the 3 words that the most answers contain somewhere (each answer counted once), and the share
  of answers that contain them (Wilson). It catches a stock phrase in the middle of answers ("if you're unsure,
  ...") that the opening share misses; the references' most common phrase is in about a sixth of them.
- **distinct-n** (Li et al. 2016): distinct n-grams over all n-grams of all answers pooled. Its interval is the
  jackknife's over answers: a bootstrap resample repeats whole answers, which lowers distinct-n far below its value.
- **repetition**: within one answer, the share of its 3-grams that repeat an earlier 3-gram of the same answer
  (0 for an answer that never repeats itself, near 1 for a loop); the mean over answers (BCa).
- **length**: words per answer (BCa).
- **degenerate**: the share of answers that are empty, one character or word repeated, or a loop, or all one answer
  (`check_answers`; Wilson), and those problems in plain words (the first `PROBLEMS_KEPT`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.sample_checks import check_answers, ngrams, opening, repetition, top_opening, words
from ..core.statistics import Interval, bca_mean, jackknife, proportion

__all__ = [  # the words and repetition rules live in core/sample_checks.py (the training callback's checks too)
    "Diversity",
    "check_answers",
    "distinct_n",
    "diversity",
    "ngrams",
    "opening",
    "repetition",
    "top_opening",
    "top_phrase",
    "words",
]


def top_phrase(tokenized: Sequence[Sequence[str]], n: int = 3) -> tuple[str, int]:
    """The n words that the most answers contain (ties: the first seen) and how many answers contain them."""
    counts = Counter(g for tokens in tokenized for g in dict.fromkeys(ngrams(tokens, n)))
    if not counts:
        return "", 0
    phrase, count = counts.most_common(1)[0]
    return " ".join(phrase), count


def distinct_n(tokenized: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams of all answers pooled (nan when no answer has n words)."""
    grams = [g for tokens in tokenized for g in ngrams(tokens, n)]
    return len(set(grams)) / len(grams) if grams else float("nan")


PROBLEMS_KEPT = 10  # plain-words problems kept in the figures (a collapsed set of 50 answers has 50)


@dataclass
class Diversity:
    """The collapse and diversity figures of one set of answers."""

    answers: int
    top_opening: str
    opening_share: Interval
    top_phrase: str
    phrase_share: Interval
    distinct_1: Interval
    distinct_2: Interval
    repetition: Interval
    length_words: Interval
    degenerate: Interval
    problems: list[str]

    def as_dict(self) -> dict:
        return {
            "answers": self.answers,
            "top_opening": self.top_opening,
            "top_phrase": self.top_phrase,
            "problems": self.problems,
            **{
                k: getattr(self, k).as_dict()
                for k in (
                    "opening_share",
                    "phrase_share",
                    "distinct_1",
                    "distinct_2",
                    "repetition",
                    "length_words",
                    "degenerate",
                )
            },
        }


def diversity(
    texts: Sequence[str], opening_words: int = 3, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> Diversity:
    tokenized = [words(t) for t in texts]
    phrase, count = top_opening(texts, opening_words)
    opens = torch.tensor(
        [float(phrase != "" and opening(t, opening_words) == phrase) for t in texts], dtype=torch.float64
    )

    stock, _ = top_phrase(tokenized, opening_words)
    contains = torch.tensor(
        [float(stock != "" and stock in {" ".join(g) for g in ngrams(t, opening_words)}) for t in tokenized],
        dtype=torch.float64,
    )

    check = check_answers(texts, opening_words)
    broken = torch.zeros(len(texts), dtype=torch.float64)
    broken[check.degenerate] = 1.0

    def distinct(n: int) -> Interval:
        return jackknife(lambda idx: distinct_n([tokenized[i] for i in idx], n), len(texts), confidence, (0.0, 1.0))

    return Diversity(
        answers=len(texts),
        top_opening=phrase,
        opening_share=proportion(opens, confidence),
        top_phrase=stock,
        phrase_share=proportion(contains, confidence),
        distinct_1=distinct(1),
        distinct_2=distinct(2),
        repetition=bca_mean(
            torch.tensor([repetition(t) for t in tokenized], dtype=torch.float64), resamples, confidence, seed
        ),
        length_words=bca_mean(
            torch.tensor([float(len(t)) for t in tokenized], dtype=torch.float64), resamples, confidence, seed
        ),
        degenerate=proportion(broken, confidence),
        problems=check.problems[:PROBLEMS_KEPT],
    )
