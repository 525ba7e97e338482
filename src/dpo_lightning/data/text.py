"""The one rule for turning a prompt or an answer into text, for every reader of it: judges without a chat
template, reports, the blind sheets, the model card. A value is a text, or chat messages."""

from __future__ import annotations

from typing import Any

Messages = list[dict[str, str]]
Prompt = str | Messages


def as_text(value: Prompt) -> str:
    """A text as it is; chat messages as their contents, one per line (an answer is usually one message)."""
    return value if isinstance(value, str) else "\n".join(m["content"] for m in value)


def prompt_text(prompt: Prompt) -> str:
    """A prompt as a reader sees it: its text, a single user turn's content, or the turns as `role: content`."""
    if isinstance(prompt, str):
        return prompt
    if len(prompt) == 1 and prompt[0]["role"] == "user":
        return prompt[0]["content"]
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)


def like(response: Any, text: str) -> Any:
    """`text` in the shape of `response`: a string, or its messages with the last one's content replaced."""
    return text if isinstance(response, str) else [*response[:-1], {**response[-1], "content": text}]
