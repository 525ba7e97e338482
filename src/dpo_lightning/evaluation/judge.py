"""An optional judge: any Hugging Face sequence-classification reward model scores (prompt, response) pairs."""

from __future__ import annotations

import torch
from torch import Tensor

from .scoring import bootstrap_mean


class RewardJudge:
    """Scores responses with a reward model: its single logit, or log p(last label) for a multi-label classifier.

    Dialogues are rendered with the judge's own chat template when it has one, else as plain
    `prompt + response` text, so the judge sees text in the form it was trained on.
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

    def render(self, prompt: str, response: str) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}], tokenize=False
            )
        return f"{prompt}{response}"

    @torch.no_grad()
    def score(self, prompts: list[str], responses: list[str]) -> Tensor:
        texts = [self.render(p, r) for p, r in zip(prompts, responses)]
        scores = []
        for start in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
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
    """Win/tie/loss of the policy against the base on the same prompts; win rate counts a tie as half a win."""
    diff = policy_scores - base_scores
    wins, losses = diff > tie_tolerance, diff < -tie_tolerance
    ties = ~(wins | losses)
    outcome = wins.double() + 0.5 * ties.double()
    rate = bootstrap_mean(outcome, resamples, confidence, seed)
    return {
        "wins": int(wins.sum()),
        "ties": int(ties.sum()),
        "losses": int(losses.sum()),
        "win_rate": rate.value,
        "ci_low": rate.low,
        "ci_high": rate.high,
        "mean_score_policy": policy_scores.mean().item(),
        "mean_score_base": base_scores.mean().item(),
    }
