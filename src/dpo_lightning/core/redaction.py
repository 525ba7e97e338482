"""Keep secrets out of logs, saved configs and reports.

A value is secret when it sits under a key that names one (token, api_key, secret, password), when it is the value
of such an environment variable (WANDB_API_KEY, HF_TOKEN, ...), or when it looks like a token (hf_..., sk-...).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

MASK = "***"
# A key that ends in a secret's name: hf_token, wandb_api_key, client_secret, password (not max_new_tokens,
# tokenizer_from or pad_token_id).
SECRET_WORD = r"(?:token|api[_-]?key|secret|password|passwd|credentials?)"
SECRET_KEY = re.compile(rf"(?:^|[_.\-]){SECRET_WORD}$", re.IGNORECASE)
TOKEN_LIKE = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{20,})\b")
# `key: value` / `key=value` / `"key": "value"` where the key names a secret (YAML, overrides, JSON, log text).
KEY_VALUE = re.compile(
    rf"""(?P<key>\b(?:[\w\-]*[_\-])?{SECRET_WORD})(?P<sep>["']?\s*[:=]\s*)(?P<value>"[^"]*"|'[^']*'|[^\s,}}\]]+)""",
    re.IGNORECASE,
)


def secret_values() -> list[str]:
    """Values of secret-named environment variables (at least 8 characters, so no flag like `1` is masked)."""
    return sorted(
        {v for k, v in os.environ.items() if SECRET_KEY.search(k.lower()) and len(v) >= 8}, key=len, reverse=True
    )


# A decimal number with a point or an exponent is a measurement (val/preference/accuracy_per_token: 0.92), never
# a credential, and stays readable; so do null and the booleans.
NOT_SECRET = re.compile(
    r"""^["']?(?:-?\d*\.\d+(?:e[+-]?\d+)?|-?\d+e[+-]?\d+|-?\d+\.|null|none|true|false)["']?$""", re.I
)


def redact_text(text: str) -> str:
    for value in secret_values():
        text = text.replace(value, MASK)
    text = TOKEN_LIKE.sub(MASK, text)

    def mask(m: re.Match) -> str:
        return m.group(0) if NOT_SECRET.match(m.group("value")) else m.group("key") + m.group("sep") + MASK

    return KEY_VALUE.sub(mask, text)


def redact(obj: Any) -> Any:
    """A copy of a config container (dicts, lists, strings) with every secret masked."""
    if isinstance(obj, dict):
        return {
            k: MASK
            if isinstance(k, str) and SECRET_KEY.search(k) and v not in (None, "") and not isinstance(v, float)
            else redact(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_files(paths: list[Path]) -> None:
    """Mask secrets in files already written (Hydra's .hydra/*.yaml hold the raw command-line overrides)."""
    for path in paths:
        if path.is_file():
            text = path.read_text(errors="replace")
            clean = redact_text(text)
            if clean != text:
                path.write_text(clean)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def install_log_redaction() -> None:
    """Mask secrets in every log record that reaches the root logger's handlers (console and train.log)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
