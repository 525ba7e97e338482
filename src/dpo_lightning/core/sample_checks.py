"""Words, repetition, and the checks that call a set of generated answers broken: the one copy of each rule, used by
the evaluation's diversity figures (`evaluation/diversity.py`) and by the sample generations during training
(`lightning/callbacks/generations.py`).

Words are lower-cased runs of letters, digits and apostrophes, so "I'm unsure," and "i'm unsure" are the same.

An answer is **degenerate** when it is
- **empty** (nothing but white space: the model ended at once, or produced only special tokens);
- **one character repeated**: one character (digits aside: "1000000" is an answer) is at least `REPEATED_SHARE`
  of the answer's non-space characters, at least `MIN_REPEATS` times ("🐁⚕⚕⚕⚕⚕", "!!!!!!");
- **one word repeated**: one word is at least `REPEATED_WORD_SHARE` of its words, at least `MIN_REPEATS` times;
- **a loop**: at least `LOOP_SHARE` of its 3-word phrases repeat an earlier one of the same answer (an answer of
  fewer than 3 words and at least `MIN_CHARACTER_LOOP` characters, digits aside: of its 3-character runs instead,
  so "abcabcabcabc" and scripts written without spaces are read too);
and a set of `ALIKE_MIN` (3) answers or more is degenerate when every answer is the **same text** (two refusals
can be one sentence); one whose answers all **open with the same 3 words** is reported too (the prompts differ: a
policy collapsed onto one opening), though no answer counts as degenerate for it. The limits are for a handful of
short answers (the training callback's 4 prompts, 48 tokens): an ordinary answer, even one that repeats a phrase
once, trips none of them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")

LOOP_SHARE = 0.5  # this share of an answer's 3-grams repeat an earlier 3-gram of it: a loop
REPEATED_SHARE = 0.5  # one character is this share of the answer's characters: one character repeated
REPEATED_WORD_SHARE = 0.75  # one word is this share of its words ("a human, a human, ..." is a loop instead)
MIN_REPEATS = 5  # ... and appears at least this often (a short "No, no." is an answer)
MIN_CHARACTER_LOOP = 12  # an answer of fewer than 3 words is read as a loop of characters from this length
ALIKE_MIN = 3  # answers needed before "all alike" is worth saying (2 refusals can be the same sentence)
QUOTE = 40  # characters of an answer quoted in a problem


def words(text: str) -> list[str]:
    return WORD.findall(text.lower().replace("\u2019", "'"))


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repetition(tokens: Sequence[str], n: int = 3) -> float:
    """Share of the answer's n-grams that repeat an earlier one of the same answer (0 without n words)."""
    grams = ngrams(tokens, n)
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def opening(text: str, n: int = 3) -> str:
    """The answer's first n words ('' for an empty answer); shorter answers open with all their words."""
    return " ".join(words(text)[:n])


def top_opening(texts: Sequence[str], n: int = 3) -> tuple[str, int]:
    """The most common opening (ties: the first seen) and how many answers start with it."""
    counts = Counter(o for o in (opening(t, n) for t in texts) if o)
    if not counts:
        return "", 0
    return counts.most_common(1)[0]


def quoted(text: str, limit: int = QUOTE) -> str:
    text = " ".join(text.split())
    return f'"{text[:limit]}…"' if len(text) > limit else f'"{text}"'


def characters(text: str) -> list[str]:
    """The answer's visible characters: no white space, no marks or format characters (an emoji's variation
    selector, a joiner), so "⚕️⚕️" is two of one character."""
    return [c for c in text if not c.isspace() and unicodedata.category(c) not in ("Mn", "Me", "Cf")]


def answer_problem(text: str) -> str | None:
    """What is wrong with one answer, in plain words ("empty", "one word repeated: ..."), or None."""
    chars = characters(text)
    if not chars:
        return "empty"
    letters = [c for c in chars if not c.isdigit()]  # a number is an answer: "1000000" is no loop
    if letters:
        top, count = Counter(letters).most_common(1)[0]
        if count >= MIN_REPEATS and count >= REPEATED_SHARE * len(chars):
            return f'one character repeated: "{top}" is {count} of its {len(chars)} characters'
    tokens = words(text)
    if tokens:
        top, count = Counter(tokens).most_common(1)[0]
        if count >= MIN_REPEATS and count >= REPEATED_WORD_SHARE * len(tokens):
            return f'one word repeated: "{top}" is {count} of its {len(tokens)} words'
    if len(tokens) >= 3:
        units, unit, joiner = tokens, "3-word phrases", " "
    elif len(letters) >= MIN_CHARACTER_LOOP:
        units, unit, joiner = letters, "3-character runs", ""
    else:
        return None
    share = repetition(units)
    if share >= LOOP_SHARE:
        most = Counter(ngrams(units, 3)).most_common(1)[0][0]
        return f'a loop: {share:.0%} of its {unit} repeat an earlier one ("{joiner.join(most)}" most)'
    return None


@dataclass
class SampleCheck:
    """The checks' verdict on one set of answers: which are degenerate, and every problem in plain words."""

    answers: int
    degenerate: list[int] = field(default_factory=list)  # indices of the degenerate answers
    problems: list[str] = field(default_factory=list)  # one plain-words line per problem found

    @property
    def share(self) -> float:
        """The share of the answers that are degenerate (0 for no answers)."""
        return len(self.degenerate) / self.answers if self.answers else 0.0

    def summary(self, limit: int = 4) -> str:
        """The problems on one line, the first `limit` of them and how many more."""
        shown = "; ".join(self.problems[:limit])
        more = len(self.problems) - limit
        return shown + (f"; and {more} more" if more > 0 else "")


def check_answers(texts: Sequence[str], opening_words: int = 3) -> SampleCheck:
    """Every answer's problem (`answer_problem`), then the set's (3 answers or more): the same answer to every
    prompt, or the same opening. Answers are numbered from 1; one problem shared by several answers is said once."""
    check = SampleCheck(answers=len(texts))
    n = len(texts)
    stripped = {t.strip() for t in texts}
    if n >= ALIKE_MIN and len(stripped) == 1 and "" not in stripped:
        problem = answer_problem(texts[0])
        check.degenerate = list(range(n))
        check.problems.append(
            f"the same answer to all {n} prompts{f', {problem}' if problem else ''}: {quoted(texts[0])}"
        )
        return check
    found: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        problem = answer_problem(text)
        if problem is not None:
            check.degenerate.append(i)
            found.setdefault(problem, []).append(i + 1)
    for problem, numbers in found.items():
        which = f"answer {numbers[0]}" if len(numbers) == 1 else f"answers {', '.join(map(str, numbers))}"
        verb = "is" if len(numbers) == 1 else "are"
        check.problems.append(
            f"{which} of {n} {verb} {problem}" + ("" if problem == "empty" else f": {quoted(texts[numbers[0] - 1])}")
        )
    if n >= ALIKE_MIN:
        phrase, count = top_opening(texts, opening_words)
        if count == n and len(phrase.split()) == opening_words:
            check.problems.append(f'all {n} answers open with "{phrase}"')
    return check
