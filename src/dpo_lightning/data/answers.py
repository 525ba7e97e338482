"""Final answers of worked solutions and completions, and how two are compared: the rule `exact_match` judges by,
and the data's problems are built with (a problem's worked answer, and a wrong one for its held-out pairs)."""

from __future__ import annotations

import random
import re
from decimal import Decimal, InvalidOperation

# "1,234.5", "-3", "2.50", "−7" (a unicode minus); thousands commas only in groups of three
NUMBER = re.compile(r"[-−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
MARKERS = (re.compile(r"####"), re.compile(r"\b(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)", re.I))
LATEX = re.compile(r"\\(?:boxed|frac|dfrac|sqrt|pi|cdot|times)\b|\$[^$\n]+\$")  # math-verify's domain


def final_answer(text: str) -> str | None:
    """The final answer of a completion (or of a reference such as GSM8K's "... #### 18"): after the last "####",
    else after the last "the answer is" / "answer:", else the last number; None where there is none."""
    for marker in MARKERS:
        found = list(marker.finditer(text))
        if found:
            tail = text[found[-1].end() :].strip()
            number = NUMBER.search(tail)
            if number:
                return number.group(0)
            return tail.splitlines()[0].strip(" .") if tail else None
    numbers = NUMBER.findall(text)
    return numbers[-1] if numbers else None


def as_number(text: str) -> Decimal | None:
    cleaned = text.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        return Decimal(cleaned)
    except InvalidOperation:
        return None


def same_answer(predicted: str, reference: str) -> bool:
    """Whether two final answers agree: as numbers where both are numbers, else as normalised text."""
    a, b = as_number(predicted), as_number(reference)
    if a is not None and b is not None:
        return a == b
    return " ".join(predicted.lower().split()).strip(" .") == " ".join(reference.lower().split()).strip(" .")


CALCULATOR = re.compile(r"<<[^>]*>>")  # GSM8K's calculator annotations: "48/2 = <<48/2=24>>24"
SLIPS = (1, -1, 2, -2, 10, -10)


def worked_answer(answer: str) -> str:
    """A reference answer as a worked solution that ends "The answer is N.": GSM8K's "#### N" rewritten, its
    calculator annotations dropped; a bare final answer ("18") becomes "The answer is 18."."""
    text = CALCULATOR.sub("", str(answer)).strip()
    if "####" in text:
        work, final = text.rsplit("####", 1)
        work = work.strip()
        return (work + "\n" if work else "") + f"The answer is {final.strip()}."
    if final_answer(text) == text.strip(" ."):
        return f"The answer is {text.strip(' .')}."
    return text


def wrong_answer(worked: str, key: str) -> str:
    """The worked solution with an arithmetic slip in its result: the final number, wherever it appears from the
    last step on, off by a small amount chosen by `key` (the same slip for the same problem, every run)."""
    final = final_answer(worked)
    value = as_number(final) if final is not None else None
    if value is None:
        return "I don't know."
    slip = random.Random(key).choice(SLIPS)
    wrong = value + slip
    if value >= 0 and wrong < 1:  # a count stays a positive count
        wrong = value + abs(slip)
    wrong_text = str(int(wrong)) if wrong == wrong.to_integral_value() else str(wrong)
    cut = max(worked.rfind("="), 0)
    head, tail = worked[:cut], worked[cut:]
    pattern = re.compile(rf"(?<![\d.,]){re.escape(final.replace('−', '-'))}(?![\d])")
    return head + pattern.sub(wrong_text, tail.replace("−", "-"))
