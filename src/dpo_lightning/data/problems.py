"""Problems with a reference answer as preference pairs (`data=arithmetic`, `gsm8k`, `problems`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .answers import worked_answer, wrong_answer
from .formats import PairFormat, PreferencePair, _text
from .readers import DataError


@dataclass
class ProblemFormat(PairFormat):
    """Problems with a reference answer (`data=arithmetic`, `gsm8k`, `problems`): GSM8K's `question` and `answer`
    (a worked solution ending "#### N"), or any `{prompt, answer}` rows (`prompt_field=prompt`). A problem becomes
    a pair: its worked answer (GSM8K's rewritten to end "The answer is N.", its calculator annotations dropped; a
    bare answer as "The answer is N.") against the same answer with an arithmetic slip in its result (the same slip
    every run), so the evaluation's pair figures read on problems too; the raw answer goes to `columns["answer"]`
    for `exact_match`, with the row's other fields. `suffix` is appended to every prompt (how to answer)."""

    prompt_field: str = "prompt"  # GSM8K's: question
    answer_field: str = "answer"
    suffix: str = ""

    def parse(self, row: dict[str, Any], where: str) -> PreferencePair:
        prompt = _text(row, self.prompt_field, where)
        if self.answer_field not in row or row[self.answer_field] is None:
            raise DataError(where, self.answer_field, f"missing (the row has {sorted(row)})", "missing_field")
        answer = row[self.answer_field]
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or not str(answer).strip():
            raise DataError(
                where, self.answer_field, f"expected a non-empty text or number, got {answer!r}", "wrong_type"
            )
        chosen = worked_answer(str(answer))
        columns = {k: v for k, v in row.items() if k not in (self.prompt_field, self.answer_field)}
        return PreferencePair(
            prompt + self.suffix,
            chosen,
            wrong_answer(chosen, prompt),
            where=where,
            columns={"answer": answer, **columns},
        )
