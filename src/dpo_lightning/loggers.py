"""Logger factories that need a decision at run time (Lightning's own loggers are targeted directly)."""

from __future__ import annotations

import os
from pathlib import Path


def wandb_configured() -> bool:
    """True when an API key is set or `wandb login` stored one in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_logger(project: str = "dpo_lightning", name: str | None = None, save_dir: str = ".",
                 offline: bool | None = None, log_model: bool = False, **kwargs):
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = not wandb_configured()
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline, log_model=log_model, **kwargs)
