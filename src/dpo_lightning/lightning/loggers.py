"""Logger factories that need a decision at run time (Lightning's own loggers are targeted directly)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from lightning.pytorch.loggers import MLFlowLogger, WandbLogger

from ..core.credentials import wandb_configured
from ..core.redaction import redact_text

log = logging.getLogger(__name__)


def wandb_logger(
    project: str = "dpo_lightning",
    name: str | None = None,
    save_dir: str = ".",
    offline: bool | None = None,
    log_model: bool = False,
    **kwargs,
):

    if offline is None:
        offline = not wandb_configured()
    if any(redact_text(arg) != arg for arg in sys.argv) and "settings" not in kwargs:
        import wandb

        # W&B records the command line in its run metadata; a secret passed there must not be recorded.
        log.warning(
            "a command-line argument holds a secret: W&B metadata capture (command line, host) is off for this run"
        )
        kwargs["settings"] = wandb.Settings(x_disable_meta=True)
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, name=name, save_dir=save_dir, offline=offline, log_model=log_model, **kwargs)


def mlflow_logger(
    experiment_name: str = "dpo_lightning",
    run_name: str | None = None,
    save_dir: str = "mlruns",
    tracking_uri: str | None = None,
    **kwargs,
):
    """Lightning's MLFlowLogger. With no `tracking_uri`, a local store that works offline: an SQLite database at
    `<save_dir>/mlflow.db` with the artifacts beside it (view with `mlflow ui --backend-store-uri
    sqlite:///<save_dir>/mlflow.db`); or a server's address (`http://...`, `databricks`)."""

    artifact_location = kwargs.pop("artifact_location", None)
    if tracking_uri is None:
        store = Path(save_dir).expanduser().resolve()
        store.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
        artifact_location = artifact_location or (store / "artifacts").as_uri()
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the store's one-time table setup
    return MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name,
        tracking_uri=tracking_uri,
        artifact_location=artifact_location,
        **kwargs,
    )
