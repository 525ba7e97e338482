"""Every loss option trains: the real train() on the smoke run, one optimizer step each, its own values logged."""

from __future__ import annotations

import math

import pytest

from conftest import SMOKE, check_run_outputs, compose, options, run_script

OWN_METRICS = {  # what a loss logs beside the common metrics
    "mpo": ["train/loss/preference", "train/loss/quality/weight", "train/bco/delta"],
    "dpo_sft": ["train/loss/sft", "train/loss/sft/weight"],
    "wpo": ["train/wpo_weight"],
    "bco_pair": ["train/bco/delta"],
    "kto": ["train/kto/kl", "val/kto/rewards_desirable", "val/kto/rewards_undesirable"],
}
DATA = {"kto": "data=unpaired_from_pairs"}  # KTO learns from labelled rows: the built-in pairs, split


def smoke_step(tmp_path, *overrides):
    return compose(
        *SMOKE,
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        "data.max_train_pairs=4",
        "data.max_val_pairs=4",
        "callbacks=none",
        "logger=none",
        *overrides,
        output_dir=tmp_path,
    )


@pytest.mark.parametrize("name", options("loss"))
def test_every_loss_option_trains_a_step(name, tmp_path):
    from dpo_lightning.tasks.train import train

    metrics = train(smoke_step(tmp_path, f"loss={name}", *([DATA[name]] if name in DATA else [])))
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"]), metrics
    assert 0.0 <= metrics["val/rewards/accuracies"] <= 1.0
    for key in OWN_METRICS.get(name, []):
        assert math.isfinite(metrics[key]), (key, sorted(metrics))
    if name == "wpo":
        assert 0.0 < metrics["train/wpo_weight"] <= 1.0


def test_kto_after_its_sft_stage_on_the_desirable_rows_and_the_mismatches_refused(tmp_path):
    """The default pipeline on unpaired rows (train.py): SFT learns the desirable completions, then KTO; pairwise
    losses and unpaired data refuse each other, naming the fix."""
    import json

    from dpo_lightning.tasks.train import train

    run = tmp_path / "kto"
    stage = 'before.sft=["stage=sft","trainer.max_steps=1"]'
    small = ("model=tiny", "trainer.max_steps=2", "data.max_train_pairs=8", "data.max_val_pairs=4", "data.batch_size=4")
    run_script("train.py", *small, "loss=kto", "data=unpaired_from_pairs", stage, f"hydra.run.dir={run}")
    metrics = check_run_outputs(run)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/kto/kl"])
    labels = json.loads((run / "data_report.json").read_text())["train"]["labels"]
    assert labels["desirable"] + labels["undesirable"] == 8
    sft = json.loads((run / "sft" / "metrics.json").read_text())
    assert math.isfinite(sft["train/loss"]) and (run / "sft" / "final" / "config.json").is_file()
    # evaluate.py scores a KTO run on the preference pairs its rows were split from (4 held-out pairs, not 8 rows)
    run_script("evaluate.py", f"run_dir={run}", "generation.num_prompts=2", "generation.max_new_tokens=4")
    evaluation = json.loads((run / "eval" / "metrics.json").read_text())
    assert evaluation["pairs"] == 4
    with pytest.raises(ValueError, match="use loss=kto"):
        train(smoke_step(tmp_path / "dpo", "loss=dpo", "data=unpaired_from_pairs"))
    with pytest.raises(ValueError, match="data=unpaired"):
        train(smoke_step(tmp_path / "pairs", "loss=kto"))
