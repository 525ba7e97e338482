"""Collapse and diversity of a set of generated answers, the figures that catch a policy that has collapsed into
boilerplate (the same opening on many prompts, a small shared vocabulary, loops inside an answer).

Words are lower-cased runs of letters, digits and apostrophes, so "I'm unsure," and "i'm unsure" are the same.

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
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.statistics import Interval, bca_mean, jackknife, proportion

WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("\u2019", "'"))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def opening(text: str, n: int = 3) -> str:
    """The answer's first n words ('' for an empty answer); shorter answers open with all their words."""
    return " ".join(words(text)[:n])


def top_opening(texts: Sequence[str], n: int = 3) -> tuple[str, int]:
    """The most common opening (ties: the first seen) and how many answers start with it."""
    counts = Counter(o for o in (opening(t, n) for t in texts) if o)
    if not counts:
        return "", 0
    return counts.most_common(1)[0]


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


def repetition(tokens: Sequence[str], n: int = 3) -> float:
    """Share of the answer's n-grams that repeat an earlier one of the same answer (0 without n words)."""
    grams = ngrams(tokens, n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


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

    def as_dict(self) -> dict:
        return {
            "answers": self.answers,
            "top_opening": self.top_opening,
            "top_phrase": self.top_phrase,
            **{
                k: getattr(self, k).as_dict()
                for k in ("opening_share", "phrase_share", "distinct_1", "distinct_2", "repetition", "length_words")
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

    def distinct(n: int) -> Interval:
        return jackknife(lambda idx: distinct_n([tokenized[i] for i in idx], n), len(texts), confidence)

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
    )
