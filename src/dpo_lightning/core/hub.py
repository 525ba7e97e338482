"""The Hugging Face Hub: the one rule for what names a Hub repository (model or dataset) rather than a local path,
and the push of a run's `final/` folder with its model card (`hub.repo_id`, off by default). The token comes from
`hub.token`, HF_TOKEN or the stored login, and is never printed."""

from __future__ import annotations

import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from .errors import UsageError

log = logging.getLogger(__name__)

# `org/name` or a bare `name` (e.g. gpt2): letters, digits, '-', '_', '.'
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
# File suffixes that name local data, never a Hub repository.
LOCAL_SUFFIXES = (".json", ".jsonl", ".gz", ".parquet", ".arrow", ".csv", ".tsv", ".txt")


def looks_local(name: str | Path) -> bool:
    """A local path: relative or absolute path syntax, a data-file suffix, or something that exists here."""
    text = str(name)
    return text.startswith((".", "/", "~")) or text.endswith(LOCAL_SUFFIXES) or Path(text).expanduser().exists()


def is_hub_id(name: object) -> bool:
    """Whether `name` names a Hub repository: not a local path, and in the Hub's `org/name` (or `name`) form."""
    text = str(name or "")
    return bool(HUB_ID.match(text)) and not looks_local(text)


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def check_hub_reachable(key: str, repo_id: str, kind: str = "model", timeout: float = 5.0) -> None:
    """One request to the Hub (any answer, 401 or 404 included, means it is reachable) before `repo_id` loads, so a
    machine without the Hub hears so in seconds, with what to do, instead of after the loader's retries. Skipped
    with HF_HUB_OFFLINE=1 (the cache alone is read)."""
    if offline():
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    url = f"{endpoint}/api/{kind}s/{repo_id}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # the Hub answered
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        cached = "; if it is in the Hugging Face cache already, set HF_HUB_OFFLINE=1 to use that copy"
        local = "a local folder" if kind == "model" else "a local file or folder"
        raise UsageError(
            f"{key}={repo_id}: the Hugging Face Hub ({endpoint}) is not reachable from here ({reason}). Give {local} "
            f"instead ({key}=/path/to/it){cached}"
        ) from None


def push_to_hub(
    run_dir: str | Path,
    repo_id: str,
    private: bool = True,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Upload a model trained with dpo_lightning",
    only_card: bool = False,
) -> str:
    """Upload `final/` (or only its card) to the Hub model repository `repo_id`, creating it if needed."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    final = Path(run_dir) / "final"
    if only_card:
        result = api.upload_file(
            path_or_fileobj=str(final / "README.md"),
            path_in_repo="README.md",
            repo_id=repo_id,
            revision=revision,
            commit_message="Update the model card with the evaluation",
        )
    else:
        result = api.upload_folder(
            folder_path=str(final), repo_id=repo_id, revision=revision, commit_message=commit_message
        )
    log.info("Pushed %s to https://huggingface.co/%s", "the card" if only_card else final, repo_id)
    return str(result)
