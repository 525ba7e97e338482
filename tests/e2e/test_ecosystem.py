"""What leaves a run: MLflow tracking (offline store), the model card of every export, and the Hub push (the upload
mocked: no network here), with the token never written or printed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from conftest import compose, run_script, smoke
from dpo_lightning.evaluation.model_card import render_card

TOKEN = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmN"


def card_parts(path):
    text = path.read_text()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def test_mlflow_logs_the_same_metrics_params_and_generation_tables(tmp_path):
    import mlflow

    run = tmp_path / "run"
    run_script("train.py", *smoke("logger=mlflow", "trainer.max_steps=2"), f"hydra.run.dir={run}")
    client = mlflow.tracking.MlflowClient(f"sqlite:///{run / 'mlruns' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("dpo_lightning").experiment_id])
    with open(run / "csv" / "metrics.csv") as f:
        csv_names = {k for row in csv.DictReader(f) for k, v in row.items() if v and k != "step"}
    assert set(found.data.metrics) == csv_names  # same names as every other logger, train/ and val/
    assert found.data.params["loss/beta"] == "0.1" and found.data.params["model/_target_"].endswith("tiny_llama")
    (table,) = [a.path for a in client.list_artifacts(found.info.run_id, "generations")]
    rows = json.loads((run / "mlruns" / "artifacts").glob(f"*/artifacts/{table}").__next__().read_text())
    assert rows["columns"] == ["step", "prompt", "policy", "reference"] and len(rows["data"]) == 4


def test_every_export_has_a_card_and_hub_push_uploads_it_without_leaking_the_token(tmp_path, monkeypatch, capfd):
    import huggingface_hub

    from dpo_lightning.tasks.train import train

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, folder_path, repo_id, **kwargs):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", repo_id, files, kwargs.get("revision")))
            return f"https://huggingface.co/{repo_id}/commit/1"

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    run = tmp_path / "run"
    cfg = compose(
        *smoke("trainer.max_steps=2", "loss.beta=0.2", "hub.repo_id=me/tiny-dpo", f"hub.token={TOKEN}"),
        output_dir=run,
    )
    metrics = train(cfg)
    assert calls[0] == ("init", TOKEN)  # the token goes to the client, and nowhere else
    assert calls[1] == ("create_repo", "me/tiny-dpo", {"private": True, "exist_ok": True, "repo_type": "model"})
    assert calls[2][:2] == ("upload_folder", "me/tiny-dpo") and "README.md" in calls[2][2]
    assert "model.safetensors" in calls[2][2] and "config.json" in calls[2][2]
    out, err = capfd.readouterr()
    for path in run.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".json", ".md", ".log", ".csv", ".jsonl"):
            assert TOKEN not in path.read_text(errors="ignore"), path
    assert TOKEN not in out + err

    front, body = card_parts(run / "final" / "README.md")
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "text-generation"
    assert "DPOLoss" in front["tags"] and "base_model" not in front  # a random-init model has no Hub origin
    assert "| data | `builtin:train` | - | 16 | 8 | - |" in body
    assert "- Loss: `DPOLoss` (beta=0.2, label_smoothing=0.0, reference_free=False)" in body
    assert f"| val/rewards/accuracies | {metrics['val/rewards/accuracies']:.4g} |" in body
    assert "Evaluation" not in body  # evaluate.py has not run


def test_the_card_names_the_base_model_hub_datasets_mixture_sources_and_lora(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    config = compose("data=mixture", "data.weights={builtin: 1, hh: 3}", "peft=lora", output_dir=run)
    from omegaconf import OmegaConf

    (run / "config.yaml").write_text(OmegaConf.to_yaml(config, resolve=True))
    (run / "metrics.json").write_text(json.dumps({"val/loss": 0.5, "train/loss": 0.6}))
    sources = {"builtin": {"train_pairs": 200, "val_pairs": 50, "weight": 1}, "hh": {"train_pairs": 600}}
    (run / "data_report.json").write_text(json.dumps({"sources": sources}))
    body = render_card(run)
    front = yaml.safe_load(body.split("---\n")[1])
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # the embedded model's origin
    assert front["datasets"] == ["Anthropic/hh-rlhf"] and front["library_name"] == "peft"
    assert "| builtin | `builtin:train` | - | 200 | 50 | 1 |" in body
    assert "| hh | `Anthropic/hh-rlhf` | train | 600 | - | - |" in body
    assert "LoRA (r=16, alpha=32" in body and "AutoPeftModelForCausalLM" in body
    assert "| val/loss | 0.5 |" in body and "train/loss" not in body


@pytest.mark.parametrize("bad", ["me/x y", "../escape"])
def test_card_base_model_is_only_a_hub_id(bad):
    from dpo_lightning.evaluation.model_card import base_model

    assert base_model({"model": {"name_or_path": bad}}) is None
    assert base_model({"model": {"name_or_path": "org/model-1.5B"}}) == "org/model-1.5B"
