"""`RewardJudge` (`judge=reward judge.model=...`, and `judge=auto`): any Hugging Face sequence-classification reward
model (a hub id, or a folder such as the `final/` of a `train_reward.py` run) scores each (prompt, answer); its
scores also give each model's mean reward. It reads no data columns."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..core.generation import bar_file
from ..data.text import Prompt, as_text
from .base import Columns, Comparison, outcomes_from_scores


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
    def score(self, prompts: list[Prompt], responses: list[str], columns: Columns | None = None) -> Tensor:
        texts = [self.render(p, r) for p, r in zip(prompts, responses)]
        scores = []
        bar = tqdm(total=len(texts), desc="judging (reward model)", unit="answer", leave=False, file=bar_file())
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
            bar.update(len(scores[-1]))
        bar.close()
        return torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64)

    def compare(
        self, prompts: list[Prompt], first: list[str], second: list[str], columns: Columns | None = None
    ) -> Comparison:
        a, b = self.score(prompts, first), self.score(prompts, second)
        return Comparison(outcomes_from_scores(a, b, self.tie_tolerance), a, b)
