"""TRL's DPOConfig names: the command-line hint, docs/trl.md's table, and experiment=trl against DPOConfig."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conftest import ROOT, compose
from dpo_lightning.config.trl_names import TRL_KEYS, trl_hint


def test_a_trl_key_gets_ours_and_any_other_override_passes():
    assert trl_hint("learning_rate=1e-6").startswith("learning_rate is TRL's name; here it is optimizer.lr=1e-6")
    assert trl_hint("beta=0.5").startswith("beta is TRL's name; here it is loss.beta=0.5")
    for ours in ("optimizer.lr=1e-6", "+learning_rate=1", "seed=3", "loss=dpo", "--cfg", "hydra.run.dir=x"):
        assert trl_hint(ours) is None


def test_every_trl_key_names_a_real_dpoconfig_field_and_a_key_that_composes():
    trl = pytest.importorskip("trl")
    fields = {f.name for f in dataclasses.fields(trl.DPOConfig)}
    script = {"model_name_or_path", "dataset_name", "use_peft", "lora_r", "lora_alpha"}  # TRL's ModelConfig, scripts
    older = {"max_prompt_length", "reference_free", "warmup_ratio", "rpo_alpha"}  # DPOConfig's before TRL 1.x
    assert set(TRL_KEYS) - script - older <= fields and not older & fields
    for key, (ours, _) in TRL_KEYS.items():
        overrides = [o for o in ours.format(v="VALUE").split() if "hydra." not in o]
        overrides = [o.replace("VALUE", "2") for o in overrides]
        if key in ("lr_scheduler_type",):
            overrides = ["scheduler=cosine_warmup"]
        if key in ("report_to",):
            overrides = ["logger=csv"]
        if key in ("loss_type",):
            overrides = ["loss=ipo"]
        if key in ("f_divergence_type",):
            overrides = ["loss=fdpo", "loss.divergence=js"]
        if key in ("truncation_mode",):
            overrides = ["data.truncation_mode=keep_start"]
        if key in ("model_name_or_path", "dataset_name"):
            continue
        compose(*overrides)  # each names a key that exists (Hydra refuses any other)


def test_docs_table_is_the_code_table():
    page = (ROOT / "docs" / "trl.md").read_text()
    for key, (ours, note) in TRL_KEYS.items():
        assert f"| `{key}` | `{ours.format(v='<value>')}` | {note} |" in page


def test_experiment_trl_is_dpoconfigs_defaults():
    trl = pytest.importorskip("trl")
    defaults = {f.name: f.default for f in dataclasses.fields(trl.DPOConfig) if f.default is not dataclasses.MISSING}
    cfg = compose("experiment=trl", "data=jsonl", f"data.path={Path(ROOT / 'README.md')}")
    assert cfg.loss._target_.endswith(".DPOLoss") and cfg.loss.beta == defaults["beta"]
    assert cfg.loss.label_smoothing == defaults["label_smoothing"] and not cfg.get("peft") and not cfg.before
    assert cfg.optimizer.lr == defaults["learning_rate"] and cfg.optimizer.weight_decay == defaults["weight_decay"]
    assert (
        cfg.scheduler.decay == defaults["lr_scheduler_type"] and cfg.scheduler.warmup_steps == defaults["warmup_steps"]
    )
    assert cfg.data.batch_size == defaults["per_device_train_batch_size"]
    assert cfg.trainer.accumulate_grad_batches == defaults["gradient_accumulation_steps"]
    assert cfg.trainer.max_epochs == defaults["num_train_epochs"] and cfg.trainer.max_steps == defaults["max_steps"]
    assert cfg.data.max_length == defaults["max_length"] and cfg.trainer.gradient_clip_val == defaults["max_grad_norm"]
    assert cfg.data.truncation_mode == defaults["truncation_mode"]
    assert cfg.module.activation_checkpointing is defaults["gradient_checkpointing"]
    assert tuple(cfg.optimizer.betas) == (0.9, 0.999)
