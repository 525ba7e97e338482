"""Where dpo_lightning caches what it builds once (the embedded model's conversion, reference log-probs, judges)."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """$DPO_LIGHTNING_CACHE, else ~/.cache/dpo_lightning (`paths.cache_dir` in config overrides both)."""
    return Path(os.environ.get("DPO_LIGHTNING_CACHE", Path.home() / ".cache" / "dpo_lightning"))
