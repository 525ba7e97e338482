"""The real train.py, end to end and small: outputs, metrics, final export, LoRA, a multirun, the embedded model."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from conftest import HH_TEST, SMOKE, check_run_outputs, compose, requires_hh, run_script


def csv_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_train_tiny_end_to_end(tmp_path):
    run = tmp_path / "run"
    run_script("train.py", *SMOKE, "trainer.accumulate_grad_batches=2", f"hydra.run.dir={run}")
    metrics = check_run_outputs(run)

    rows = csv_rows(run)
    train_rows = [r for r in rows if r.get("train/loss")]
    # 16 pairs / batch 4 = 4 micro-batches, accumulated by 2: exactly 2 optimizer steps, each logged once.
    assert [int(r["step"]) for r in train_rows] == [0, 1]
    assert float(train_rows[0]["train/loss"]) == pytest.approx(math.log(2), abs=1e-6)  # policy == reference
    assert float(train_rows[0]["train/rewards/margins"]) == pytest.approx(0.0, abs=1e-6)
    assert any(r.get("val/rewards/accuracies") for r in rows)
    assert metrics["train/loss"] == pytest.approx(float(train_rows[-1]["train/loss"]))
    samples = [json.loads(line) for line in (run / "generations" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and set(samples[0]) == {
        "step",
        "prompt",
        "policy",
        "reference",
    }  # one validation, 4 prompts
    # the random-init tiny model answers every prompt with one word repeated: the run says so, naming the step,
    # in its last lines, and in metrics.json
    assert len({s["policy"] for s in samples}) == 1 and len(set(samples[0]["policy"].split())) == 1
    assert metrics["val/samples/degenerate"] == 1.0
    log = (run / "train.log").read_text().splitlines()
    assert any("WARNING] - step 2: the policy's sample answers look broken, 4 of 4 degenerate" in line for line in log)
    assert any("training ended with broken sample answers: at step 2" in line for line in log[-5:])

    from transformers import AutoModelForCausalLM, AutoTokenizer

    final = AutoModelForCausalLM.from_pretrained(run / "final")
    AutoTokenizer.from_pretrained(run / "final")
    ckpt = torch.load(next((run / "checkpoints").glob("epoch*.ckpt")), map_location="cpu", weights_only=False)
    for name, value in final.state_dict().items():
        torch.testing.assert_close(value, ckpt["state_dict"][f"policy.{name}"], msg=name)
    assert not any(k.startswith("reference.") for k in ckpt["state_dict"])


def test_train_with_lora_exports_adapter_and_merged_model(tmp_path):
    run = tmp_path / "run"
    merged = "callbacks.export_final.merge_adapter=true"  # asked for: by default only the adapter is kept
    run_script("train.py", *SMOKE, "peft=lora", "peft.r=2", "trainer.max_steps=2", merged, f"hydra.run.dir={run}")
    check_run_outputs(run)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from dpo_lightning.models import build_tiny_llama

    assert (run / "final" / "adapter_config.json").is_file()
    adapted = PeftModel.from_pretrained(build_tiny_llama().model, run / "final").eval()
    merged = AutoModelForCausalLM.from_pretrained(run / "final" / "merged").eval()
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    torch.testing.assert_close(adapted(ids).logits, merged(ids).logits, rtol=1e-4, atol=1e-5)


def test_train_with_wandb_offline(tmp_path):
    run = tmp_path / "run"
    run_script("train.py", *SMOKE, "logger=wandb", "trainer.max_steps=1", f"hydra.run.dir={run}")
    check_run_outputs(run)  # the CSV file is kept beside W&B
    offline = list((run / "wandb").glob("offline-run-*"))
    assert offline, "no offline W&B run (no API key is configured here, so it must be offline)"


@requires_hh
def test_train_on_hh_local_file(tmp_path):
    run = tmp_path / "run"
    run_script(
        "train.py",
        *SMOKE,
        "data=hh",
        f"data.path={HH_TEST}",
        "data.max_length=256",
        "data.max_prompt_length=192",
        "trainer.max_steps=2",
        f"hydra.run.dir={run}",
    )
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["data"]["format"]["_target_"] == "dpo_lightning.data.HHFormat"
    check_run_outputs(run)


def test_multirun_over_beta_shares_one_sft_stage(tmp_path):
    """A sweep over the DPO stage's beta: one job per value (their summary beside them: test_sweeps.py), and the SFT
    stage every job shares trained once, under the sweep's stages/, each job's DPO starting from it."""
    sweep = tmp_path / "sweep"
    proc = run_script(
        "train.py",
        "-m",
        *SMOKE,
        "before={sft:['stage=sft']}",
        "trainer.max_steps=2",
        "loss.beta=0.05,0.5",
        f"hydra.sweep.dir={sweep}",
    )
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.json").exists())
    assert [p.name for p in jobs] == ["0", "1"]
    configs = [yaml.safe_load((p / "config.yaml").read_text()) for p in jobs]
    assert [c["loss"]["beta"] for c in configs] == [0.05, 0.5]
    stages = list((sweep / "stages").iterdir())
    assert [p.name.split("-")[0] for p in stages if p.is_dir()] == ["sft"]
    stage = next(p for p in stages if p.is_dir())
    assert all(c["model"]["init_from"] == str(stage) for c in configs)
    sft = yaml.safe_load((stage / "config.yaml").read_text())
    assert sft["loss"]["_target_"].endswith("SFTLoss") and sft["loss"]["beta"] == 1.0  # not the jobs' beta
    log = proc.stdout + proc.stderr
    assert log.count("stage sft: training in") == 1 and log.count("stage sft: finished") == 1
    for job in jobs:
        check_run_outputs(job)
        assert f"1. sft -> {stage}" in (job / "plan.txt").read_text()
    assert (sweep / "summary.csv").is_file()


def test_hydra_main_returns_the_optimized_metric(tmp_path):
    from dpo_lightning.tasks.train import optimized_value, train

    cfg = compose(
        *SMOKE,
        "trainer.max_steps=1",
        "trainer.enable_progress_bar=false",
        "callbacks=none",
        "logger=none",
        output_dir=tmp_path,
    )
    metrics = train(cfg)
    value = optimized_value(cfg, metrics)
    assert value == metrics["val/rewards/accuracies"] and 0.0 <= value <= 1.0
    assert json.loads((tmp_path / "metrics.json").read_text()) == pytest.approx(metrics)


def test_train_embedded_smollm2_for_two_steps(tmp_path):
    """The default command on the embedded model: its full SFT stage, then LoRA DPO with RPO's NLL term from it (two
    steps each)."""
    run = tmp_path / "run"
    run_script(
        "train.py",
        "trainer.max_steps=2",
        "data.max_train_pairs=8",
        "data.max_val_pairs=8",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        f"hydra.run.dir={run}",
    )
    metrics = check_run_outputs(run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["name_or_path"] == "embedded:smollm2-135m-instruct"
    assert config["model"]["init_from"] == str(run / "sft") and (run / "sft" / "final" / "config.json").is_file()
    sft = yaml.safe_load((run / "sft" / "config.yaml").read_text())
    assert sft["optimizer"]["lr"] == 5e-5 and not sft["peft"]  # the recipe's SFT lr, every weight
    assert config["loss"]["alpha"] == 0.1 and config["optimizer"]["lr"] == 5e-4  # RPO (the main job's), LoRA's lr
    assert (run / "final" / "adapter_config.json").is_file() and not (run / "final" / "merged").exists()
    assert not (run / "sft" / "checkpoints").exists()  # the finished stage keeps final/ only
    plan = (run / "plan.txt").read_text()  # said before anything loaded
    assert "1. sft -> " in plan and "loss=rpo_light, RPOLoss: beta 0.1, alpha 0.1" in plan and "experiment=trl" in plan
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(run / "sft" / "final")
    assert config.model_type == "llama" and config.num_hidden_layers == 30
    assert getattr(config, "quantization_config", None) is None
    assert metrics["train/loss"] > 0


def test_sft_then_dpo_from_the_sft_model(tmp_path):
    sft, dpo = tmp_path / "sft", tmp_path / "dpo"
    run_script("train.py", "experiment=hh_sft", "data=builtin", *SMOKE, "trainer.max_steps=2", f"hydra.run.dir={sft}")
    assert yaml.safe_load((sft / "config.yaml").read_text())["loss"]["_target_"] == "dpo_lightning.core.losses.SFTLoss"
    run_script(
        "train.py",
        "experiment=hh_dpo_from_sft",
        "data=builtin",
        *SMOKE,
        "trainer.max_steps=1",
        f"model.init_from={sft}",
        f"hydra.run.dir={dpo}",
    )
    rows = csv_rows(dpo)
    assert float(rows[0]["train/loss"]) == pytest.approx(math.log(2), abs=1e-6)  # policy == reference == SFT model
    from hydra.utils import instantiate
    from transformers import AutoModelForCausalLM

    start = instantiate(compose("model=tiny", f"model.init_from={sft}").model).model
    sft_final = AutoModelForCausalLM.from_pretrained(sft / "final")
    for (name, a), b in zip(start.state_dict().items(), sft_final.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    # evaluate.py base_model=pretrained compares with the model before SFT; the default, with the SFT model
    from omegaconf import OmegaConf

    from dpo_lightning.tasks.evaluate import Run, load_models

    run = Run(dpo, OmegaConf.load(dpo / "config.yaml"), dpo / "eval", torch.device("cpu"))
    pretrained = instantiate(compose("model=tiny").model).model.state_dict()
    base, _, _ = load_models(run, "pretrained")
    for name, weight in base.state_dict().items():
        torch.testing.assert_close(weight, pretrained[name], msg=name)
    base, _, _ = load_models(run)
    assert not torch.equal(base.state_dict()["model.norm.weight"], pretrained["model.norm.weight"])
    with pytest.raises(ValueError, match="give null, pretrained"):
        load_models(run, "sft")
