"""Every loss option trains: the real train() on the smoke run, one optimizer step each, its own values logged."""

from __future__ import annotations

import math

import pytest

from conftest import SMOKE, compose, options

OWN_METRICS = {  # what a loss logs beside the common metrics
    "mpo": ["train/loss/preference", "train/loss/quality/weight", "train/bco/delta"],
    "dpo_sft": ["train/loss/sft", "train/loss/sft/weight"],
    "wpo": ["train/wpo_weight"],
    "bco_pair": ["train/bco/delta"],
}


@pytest.mark.parametrize("name", options("loss"))
def test_every_loss_option_trains_a_step(name, tmp_path):
    from dpo_lightning.tasks.train import train

    cfg = compose(
        *SMOKE,
        f"loss={name}",
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        "data.max_train_pairs=4",
        "data.max_val_pairs=4",
        "callbacks=none",
        "logger=none",
        output_dir=tmp_path,
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"]), metrics
    assert 0.0 <= metrics["val/rewards/accuracies"] <= 1.0
    for key in OWN_METRICS.get(name, []):
        assert math.isfinite(metrics[key]), (key, sorted(metrics))
    if name == "wpo":
        assert 0.0 < metrics["train/wpo_weight"] <= 1.0
