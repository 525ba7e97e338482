"""Shared fixtures: the real Hydra config, a tiny saved model, the embedded-model cache, the shared HH file."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import dpo_lightning.config  # noqa: F401  (registers the ${machine:...} and ${recipe:...} resolvers conf/ reads)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
HH_TEST = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"

# One cache for the embedded model's one-time conversion, shared by every test and subprocess of the session.
os.environ.setdefault("DPO_LIGHTNING_CACHE", str(ROOT / ".cache" / "dpo_lightning"))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

requires_hh = pytest.mark.skipif(
    not HH_TEST.is_file(),
    reason=f"shared HH-RLHF file absent ({HH_TEST}); it exists only beside the project's own checkout",
)

# The smoke run every end-to-end test starts from: conf/debug/smoke.yaml (the tiny random-init model, a few built-in
# pairs, small batches). Overrides given after it (data.max_val_pairs=6, ...) take precedence, as on a command line.
SMOKE = ("debug=smoke",)


def options(group: str) -> list[str]:
    """The option names of a config group (conf/<group>/*.yaml)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def smoke(*overrides: str) -> list[str]:
    """The smoke run with `overrides` (key=value) on top."""
    return [*SMOKE, *overrides]


def tiny_llama(
    seed: int = 0, vocab: int = 97, tie: bool = True, hidden: int = 16, attn: str | None = None, dtype: str = "float64"
):
    """A Llama of a few thousand parameters (GQA, 2 layers; float64 by default): for exactness tests of the log-prob
    paths. `attn` sets the attention implementation (FlexAttention needs hidden >= 64 here: head_dim >= 16)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=tie,
    )
    if attn is not None:
        cfg._attn_implementation = attn
    return LlamaForCausalLM(cfg).to(getattr(torch, dtype))


def save_tiny_classifier(run: Path, out: Path, seed: int = 0) -> Path:
    """A random one-layer reward model with `run`'s final tokenizer, saved to `out` (a `judge=reward` model)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(run / "final")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_labels=1,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


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


METRIC_NAMES = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "kl",
)


# What StepTimer logs: the machine's speed, never equal between two runs.
TIMING_METRICS = ("train/step_seconds", "train/tokens_per_second", "train/peak_memory_gib", "train/mfu")


def learning_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A run's metrics without the timing ones: what two runs of the same training must agree on."""
    return {k: v for k, v in metrics.items() if k not in TIMING_METRICS}


def assert_same_training(a: Path, b: Path) -> None:
    """Two finished runs trained alike: the same metrics (1e-5) and the same final weights (1e-6)."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    ma = learning_metrics(json.loads((a / "metrics.json").read_text()))
    mb = learning_metrics(json.loads((b / "metrics.json").read_text()))
    assert ma.keys() == mb.keys()
    for key in ma:
        assert mb[key] == pytest.approx(ma[key], abs=1e-5), key
    if (a / "final" / "adapter_model.safetensors").is_file():  # LoRA: the adapters' weights
        from safetensors.torch import load_file

        wa, wb = (load_file(run / "final" / "adapter_model.safetensors") for run in (a, b))
    else:
        wa = AutoModelForCausalLM.from_pretrained(a / "final").state_dict()
        wb = AutoModelForCausalLM.from_pretrained(b / "final").state_dict()
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-6, msg=name)


def check_run_outputs(run: Path) -> dict[str, float]:
    """Everything a finished train.py run must leave under its output directory; returns its metrics.json."""
    import json
    import math

    import yaml

    assert (run / "config.yaml").is_file() and (run / ".hydra" / "config.yaml").is_file()
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["paths"]["output_dir"] == str(run)  # resolved, not an interpolation
    assert list((run / "checkpoints").glob("*.ckpt")), "no Lightning checkpoint"
    assert (run / "csv" / "metrics.csv").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    for prefix in ("train", "val"):
        for name in METRIC_NAMES:
            assert f"{prefix}/{name}" in metrics, f"{prefix}/{name} missing from metrics.json"
    assert metrics["train/step_seconds"] > 0 and metrics["train/tokens_per_second"] > 0  # StepTimer
    assert metrics["train/peak_memory_gib"] > 0
    assert all(math.isfinite(v) for v in metrics.values())
    return metrics
