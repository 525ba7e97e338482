"""Shared fixtures: the real Hydra config, a tiny saved model, the embedded-model cache, the shared HH file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
HH_TEST = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"

# One cache for the embedded model's one-time conversion, shared by every test and subprocess of the session.
os.environ.setdefault("DPO_LIGHTNING_CACHE", str(ROOT / ".cache" / "dpo_lightning"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

requires_hh = pytest.mark.skipif(not HH_TEST.is_file(), reason=f"shared HH-RLHF file absent ({HH_TEST}); it exists only beside the project's own checkout")


def compose(*overrides: str, output_dir: str | Path | None = None):
    """The real train.yaml composed with overrides (paths.output_dir set, since no Hydra run is active)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    extra = [f"paths.output_dir={output_dir}"] if output_dir else ["paths.output_dir=unused"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=[*overrides, *extra])


@pytest.fixture(scope="session")
def tokenizer():
    from dpo_lightning.models import build_tiny_llama

    return build_tiny_llama().tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny Llama saved in Hugging Face format, standing in for hub models (no network here)."""
    from dpo_lightning.models import build_tiny_llama

    loaded = build_tiny_llama()
    path = tmp_path_factory.mktemp("tiny-model")
    loaded.model.save_pretrained(path)
    loaded.tokenizer.save_pretrained(path)
    return path


def run_script(*args: str, cwd: Path = ROOT, timeout: int = 900):
    """Run one of the project's entry points as a user would, in a subprocess."""
    import subprocess

    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc
