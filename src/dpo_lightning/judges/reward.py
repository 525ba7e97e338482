"""Judges: what decides which of two answers to the same prompt is better. Every judge answers `compare(prompts,
first, second)` with a `Comparison` (1 where the first answer wins, 0 where it loses, 0.5 for a tie); win rates,
the judge's own accuracy on held-out pairs and the online loop's pair building all go through it.

- `RewardJudge` (`judge=reward judge.model=...`, and `judge=auto`): any Hugging Face sequence-classification reward
  model (a hub id, or a folder such as the `final/` of a `train_reward.py` run) scores each (prompt, answer); its
  scores also give each model's mean reward.
- `LLMJudge` (`judge=llm judge.model=...`, in `llm_judge.py`): a chat model asked which answer is better, in both
  orders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.statistics import bca_mean, proportion

Prompt = str | list[dict[str, str]]


def as_text(value: Prompt) -> str:
    """A text, or chat messages as their contents one per line (for a judge without a chat template)."""
    return value if isinstance(value, str) else "\n".join(m["content"] for m in value)


@dataclass
class Comparison:
    """A judge's verdicts on (first, second) answers to the same prompts. `outcomes`: 1 first wins, 0 it loses,
    0.5 tie. A scoring judge adds each answer's score; an order-swapping judge says where its two orders agreed."""

    outcomes: Tensor
    first_scores: Tensor | None = None
    second_scores: Tensor | None = None
    consistent: Tensor | None = None  # LLM judge: True where both orders gave the same verdict


class RewardJudge:
    """Scores responses with a reward model: its single logit, or log p(last label) for a multi-label classifier.

    Dialogues are rendered with the judge's own chat template when it has one (cut after the response's
    end-of-turn token, as `data.tokenize` renders training pairs), else as plain `prompt + response` text, so the
    judge sees text in the form it was trained on. The score is read where the model's own pooling reads it (the
    last token that is not padding), so a judge trained here scores exactly as it did in training. Two answers
    whose scores differ by at most `tie_tolerance` tie.
    """

    kind = "reward model"

    def __init__(
        self,
        model: str,
        device: torch.device | str = "cpu",
        max_length: int = 1024,
        batch_size: int = 8,
        tie_tolerance: float = 0.0,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(
                model, trust_remote_code=trust_remote_code, use_safetensors=True
            )
            .to(device)
            .eval()
        )
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.name, self.device, self.max_length, self.batch_size = str(model), device, max_length, batch_size
        self.tie_tolerance = tie_tolerance

    @property
    def chat(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render(self, prompt: Prompt, response: str) -> str:
        if not self.chat:
            return f"{as_text(prompt)}{response}"
        turns = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        text = self.tokenizer.apply_chat_template(turns + [{"role": "assistant", "content": response}], tokenize=False)
        eos = self.tokenizer.eos_token
        return text[: text.rfind(eos) + len(eos)] if eos and eos in text else text

    @torch.no_grad()
    def score(self, prompts: list[Prompt], responses: list[str]) -> Tensor:
        texts = [self.render(p, r) for p, r in zip(prompts, responses)]
        scores = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=not self.chat,  # a chat template writes its own special tokens
            ).to(self.device)
            logits = self.model(**enc).logits.double()
            scores.append((logits[:, 0] if logits.shape[-1] == 1 else logits.log_softmax(-1)[:, -1]).cpu())
        return torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64)

    def compare(self, prompts: list[Prompt], first: list[str], second: list[str]) -> Comparison:
        a, b = self.score(prompts, first), self.score(prompts, second)
        return Comparison(outcomes_from_scores(a, b, self.tie_tolerance), a, b)


def outcomes_from_scores(first: Tensor, second: Tensor, tie_tolerance: float = 0.0) -> Tensor:
    diff = first - second
    return (diff > tie_tolerance).double() + 0.5 * (diff.abs() <= tie_tolerance).double()


def win_rate(
    comparison: Comparison,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    names: tuple[str, str] = ("dpo", "base"),
) -> dict[str, Any]:
    """Win/tie/loss of the first answers against the second. The win rate counts a tie as half a win, with a
    Wilson interval; with a scoring judge, each side's mean score has a BCa interval (`reward_<name>` for the two
    `names`); with an order-swapping judge, `order_consistency` is the share of verdicts both orders agreed on."""
    o = comparison.outcomes
    rate = proportion(o, confidence)
    result: dict[str, Any] = {
        "wins": int((o == 1).sum()),
        "ties": int((o == 0.5).sum()),
        "losses": int((o == 0).sum()),
        "win_rate": rate.value,
        "ci_low": rate.low,
        "ci_high": rate.high,
    }
    if comparison.first_scores is not None:
        for name, scores in zip(names, (comparison.first_scores, comparison.second_scores)):
            result[f"reward_{name}"] = bca_mean(scores, resamples, confidence, seed).as_dict()
    if comparison.consistent is not None:
        result["order_consistency"] = proportion(comparison.consistent.double(), confidence).as_dict()
    return result


def judge_accuracy(judge: Any, prompts: list[Prompt], chosen: list[str], rejected: list[str], confidence=0.95):
    """How often the judge prefers the chosen response of a held-out pair to the rejected one (a tie counts half;
    Wilson interval); an order-swapping judge also says how often its two orders agreed."""
    comparison = judge.compare(prompts, chosen, rejected)
    result = {**proportion(comparison.outcomes, confidence).as_dict(), "pairs": len(prompts)}
    if comparison.consistent is not None:
        result["order_consistency"] = proportion(comparison.consistent.double(), confidence).as_dict()
    return result
