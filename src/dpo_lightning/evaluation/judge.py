"""The judge: any Hugging Face sequence-classification reward model (a hub id, or a folder such as the `final/` of a
`train_reward.py` run) scores (prompt, response) pairs. Its verdicts on the generations of two models give win
rates (Wilson intervals) and mean rewards (BCa intervals); its accuracy on held-out preference pairs says how far
to trust it."""

from __future__ import annotations

import torch
from torch import Tensor

from .intervals import bca_mean, proportion

Prompt = str | list[dict[str, str]]


def as_text(value: Prompt) -> str:
    """A text, or chat messages as their contents one per line (for a judge without a chat template)."""
    return value if isinstance(value, str) else "\n".join(m["content"] for m in value)


class RewardJudge:
    """Scores responses with a reward model: its single logit, or log p(last label) for a multi-label classifier.

    Dialogues are rendered with the judge's own chat template when it has one (cut after the response's
    end-of-turn token, as `data.tokenize` renders training pairs), else as plain `prompt + response` text, so the
    judge sees text in the form it was trained on. The score is read where the model's own pooling reads it (the
    last token that is not padding), so a judge trained here scores exactly as it did in training.
    """

    def __init__(
        self,
        name_or_path: str,
        device: torch.device | str = "cpu",
        max_length: int = 1024,
        batch_size: int = 8,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(
                name_or_path, trust_remote_code=trust_remote_code, use_safetensors=True
            )
            .to(device)
            .eval()
        )
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.name, self.device, self.max_length, self.batch_size = name_or_path, device, max_length, batch_size

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
        return torch.cat(scores)


def win_rate(
    policy_scores: Tensor,
    base_scores: Tensor,
    tie_tolerance: float = 0.0,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """Win/tie/loss of the policy against the base on the same prompts. The win rate counts a tie as half a win,
    with a Wilson interval; each model's mean judge reward has a BCa interval."""
    diff = policy_scores - base_scores
    wins, losses = diff > tie_tolerance, diff < -tie_tolerance
    ties = ~(wins | losses)
    rate = proportion(wins.double() + 0.5 * ties.double(), confidence)
    return {
        "wins": int(wins.sum()),
        "ties": int(ties.sum()),
        "losses": int(losses.sum()),
        "win_rate": rate.value,
        "ci_low": rate.low,
        "ci_high": rate.high,
        "reward_dpo": bca_mean(policy_scores, resamples, confidence, seed).as_dict(),
        "reward_base": bca_mean(base_scores, resamples, confidence, seed).as_dict(),
    }


def judge_accuracy(judge: RewardJudge, prompts: list[Prompt], chosen: list[str], rejected: list[str], confidence=0.95):
    """How often the judge scores the chosen response of a held-out pair above the rejected one (Wilson)."""
    margin = judge.score(prompts, chosen) - judge.score(prompts, rejected)
    return {**proportion(margin > 0, confidence).as_dict(), "pairs": len(prompts)}
