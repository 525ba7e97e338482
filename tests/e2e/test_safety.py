"""Safe defaults: no remote code, no pickled weights unless allowed, and no secret in anything a run writes."""

from __future__ import annotations

import re

import pytest

from conftest import CONF, ROOT, compose, run_script, smoke
from dpo_lightning.models import build_tiny_llama, load_causal_lm

FAKE_HF_TOKEN = "hf_" + "Q" * 30
FAKE_WANDB_KEY = "0123456789abcdef" * 2 + "01234567"
FAKE_CONFIG_TOKEN = "hf_" + "Z" * 30


def test_pickle_weights_are_refused_unless_allowed(tmp_path):
    import torch

    loaded = build_tiny_llama()
    torch.save(loaded.model.state_dict(), tmp_path / "pytorch_model.bin")  # a pickle-based checkpoint only
    loaded.model.config.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.safetensors")) and list(tmp_path.glob("*.bin"))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_causal_lm(str(tmp_path))
    assert load_causal_lm(str(tmp_path), allow_pickle=True).model.config.model_type == "llama"


def test_remote_code_is_off_in_every_model_option():
    """Composed, as a run sees them: every model option that loads from a hub or a folder keeps both guards off."""
    loaders = 0
    for path in sorted((CONF / "model").glob("*.yaml")):
        model = compose(f"model={path.stem}").model
        assert model.get("trust_remote_code", False) is False, path.name
        if model._target_.endswith("load_causal_lm"):
            loaders += 1
            assert model.trust_remote_code is False and model.allow_pickle is False, path.name
    assert loaders >= 6  # smollm2_135m and the five hub models at least


def test_secrets_never_reach_logs_configs_or_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_HF_TOKEN)
    monkeypatch.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    proc = run_script(
        "train.py",
        *smoke("data.max_train_pairs=8", "data.max_val_pairs=4", "trainer.max_steps=1"),
        "logger=wandb",
        f"+secrets.hf_token={FAKE_CONFIG_TOKEN}",
        f"+notes.text=token {FAKE_HF_TOKEN} here",
        f"hydra.run.dir={run}",
    )
    assert "Overrides:" in (run / "train.log").read_text()  # the overrides are logged, masked
    leaked = []
    for path in [p for p in run.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        for secret in (FAKE_HF_TOKEN, FAKE_WANDB_KEY, FAKE_CONFIG_TOKEN):
            if secret.encode() in data:
                leaked.append(f"{path.relative_to(run)}: {secret[:6]}...")
    for secret in (FAKE_HF_TOKEN, FAKE_WANDB_KEY, FAKE_CONFIG_TOKEN):
        if secret in proc.stdout + proc.stderr:
            leaked.append(f"console: {secret[:6]}...")
    assert not leaked, leaked
    assert "hf_token: '***'" in (run / "config.yaml").read_text()
    # a metric whose name ends in "token" is a number, not a secret: train.log shows it
    metrics = next(line for line in (run / "train.log").read_text().splitlines() if "Metrics:" in line)
    assert '"val/preference/accuracy_per_token": ***' not in metrics
    assert re.search(r'"val/preference/accuracy_per_token": \d', metrics)


def test_nothing_in_the_product_hardcodes_machine_paths():
    offenders = [str(p) for p in (ROOT / "src").rglob("*.py") if "/work/" in p.read_text() or "/root/" in p.read_text()]
    assert not offenders
