"""PreferencePair -> token ids: prompt, chosen and rejected, with the response ending in EOS.

Plain-text pairs are tokenized as given (prompt with the tokenizer's special tokens, e.g. BOS). Chat pairs, and
text pairs when `chat_template=true`, are rendered with the tokenizer's chat template: the prompt with the
generation prompt, each response as the assistant turn that the template appends after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.batches import pad_token_id
from .formats import PreferencePair
from .readers import DataError

TRUNCATION_MODES = ("keep_end", "keep_start", "drop")
__all__ = ["PairTokenizer", "TokenizedPair", "check_truncation", "pad_token_id"]


def check_truncation(max_length: int, max_prompt_length: int, truncation_mode: str) -> None:
    """The length and truncation settings (`data.max_length`, `data.max_prompt_length`, `data.truncation_mode`)."""
    if max_prompt_length >= max_length:
        raise ValueError(f"data.max_prompt_length ({max_prompt_length}) must be < data.max_length ({max_length})")
    if truncation_mode not in TRUNCATION_MODES:
        raise ValueError(f"data.truncation_mode must be one of {TRUNCATION_MODES}, got {truncation_mode!r}")


@dataclass
class TokenizedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    truncated: bool = False
    source: int = 0  # its source's index in a mixture (data=mixture), for per-source validation metrics
    label: bool | None = None  # an unpaired row's label (KTO): the chosen side is its completion (see formats)


class PairTokenizer:
    """Tokenizes pairs and enforces `max_length` (prompt + longest response) and `max_prompt_length`.

    An over-long pair first loses prompt tokens down to `max_prompt_length` (`keep_end` keeps the end of the
    prompt, nearest the response; `keep_start` its beginning), then response tokens; `drop` leaves it out.
    """

    def __init__(
        self,
        tokenizer: Any,
        max_length: int = 512,
        max_prompt_length: int = 256,
        truncation_mode: str = "keep_end",
        chat_template: bool = False,
    ) -> None:
        check_truncation(max_length, max_prompt_length, truncation_mode)
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; responses must end with one")
        self.tokenizer = tokenizer
        self.max_length, self.max_prompt_length = max_length, max_prompt_length
        self.truncation_mode, self.chat_template = truncation_mode, chat_template

    def __call__(self, pair: PreferencePair) -> TokenizedPair | None:
        if pair.is_chat or self.chat_template:
            prompt, chosen, rejected = self._encode_chat(pair)
        else:
            encode = self.tokenizer
            prompt = encode(pair.prompt, add_special_tokens=True)["input_ids"]
            chosen = self._with_eos(encode(pair.chosen, add_special_tokens=False)["input_ids"])
            rejected = self._with_eos(encode(pair.rejected, add_special_tokens=False)["input_ids"])
        tokens = self._truncate(prompt, chosen, rejected)
        if tokens is not None:
            tokens.label = pair.label
        return tokens

    def _with_eos(self, ids: list[int]) -> list[int]:
        return ids if ids and ids[-1] == self.tokenizer.eos_token_id else ids + [self.tokenizer.eos_token_id]

    def _encode_chat(self, pair: PreferencePair) -> tuple[list[int], list[int], list[int]]:
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            raise DataError(pair.where, None, "chat-format pair, but the tokenizer has no chat template")

        def as_messages(value: Any, role: str) -> list[dict[str, str]]:
            return [{"role": role, "content": value}] if isinstance(value, str) else value

        prompt_msgs = as_messages(pair.prompt, "user")
        prompt_text = tok.apply_chat_template(prompt_msgs, add_generation_prompt=True, tokenize=False)
        responses = []
        for name, value in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            full = tok.apply_chat_template(prompt_msgs + as_messages(value, "assistant"), tokenize=False)
            if not full.startswith(prompt_text):
                raise DataError(
                    pair.where, name, "the chat template does not render the prompt as a prefix of the dialogue"
                )
            text = full[len(prompt_text) :]
            # Cut what the template puts after the end-of-turn token (often a newline): the response ends at EOS.
            eos_at = text.rfind(tok.eos_token)
            if eos_at >= 0:
                text = text[: eos_at + len(tok.eos_token)]
            responses.append(self._with_eos(tok(text, add_special_tokens=False)["input_ids"]))
        prompt = tok(prompt_text, add_special_tokens=False)["input_ids"]
        return prompt, responses[0], responses[1]

    def _truncate(self, prompt: list[int], chosen: list[int], rejected: list[int]) -> TokenizedPair | None:
        longest = max(len(chosen), len(rejected))
        if len(prompt) + longest <= self.max_length:
            return TokenizedPair(prompt, chosen, rejected)
        if self.truncation_mode == "drop":
            return None
        if len(prompt) > self.max_prompt_length:
            keep = self.max_prompt_length
            prompt = prompt[-keep:] if self.truncation_mode == "keep_end" else prompt[:keep]
        room = self.max_length - len(prompt)
        return TokenizedPair(prompt, chosen[:room], rejected[:room], truncated=True)
