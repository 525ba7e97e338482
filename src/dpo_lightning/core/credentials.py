"""Whether credentials for an external service are set up (never what they are)."""

from __future__ import annotations

import os
from pathlib import Path


def wandb_configured() -> bool:
    """True when a W&B API key is set or `wandb login` stored one in ~/.netrc (else W&B runs offline)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
