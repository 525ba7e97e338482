"""A new user's first hour, run as they would run it: every mistake ends the command with one line naming the key,
file, line or field (no traceback: that is behind HYDRA_FULL_ERROR=1), before any model weight loads; `--help` is a
short usage; `+plan_only=true` prints the plan and stops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT


def run(*args: str, env: dict[str, str] | None = None, script: str = "train.py") -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, script, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    return proc


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The command failed with exit code 2 and said why in one line, with no traceback and no model loaded."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert "Loading weights" not in out  # the tiny saved model's loading bar: nothing loaded
    lines = [line for line in out.splitlines() if "ERROR" in line or line.startswith("error:")]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


@pytest.fixture
def saved(tiny_model_dir, tmp_path):
    """The smoke run on a saved model folder (its loading is visible) writing under tmp_path."""
    return ["debug=smoke", f"model.name_or_path={tiny_model_dir}", f"hydra.run.dir={tmp_path / 'run'}"]


def test_a_bad_row_is_named_by_file_line_and_field_before_the_model_loads(saved, tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(5)]
    del rows[2]["rejected"]
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = one_error_line(run(*saved, "data=jsonl", f"data.path={path}"))
    assert f"{path}:3: field 'rejected': missing" in line


def test_a_value_of_the_wrong_type_names_its_key_and_the_type(saved):
    line = one_error_line(run(*saved, "loss.beta=abc"))
    assert "loss.beta='abc': DPOLoss takes beta as a number" in line


def test_a_loop_setting_lightning_refuses_is_named_before_anything_loads(saved):
    line = one_error_line(run(*saved, "trainer.max_steps=-3"))
    assert "trainer: max_steps must be a non-negative integer or -1" in line


def test_a_missing_data_path_is_required_not_the_builtin_set_silently(saved):
    line = one_error_line(run(*saved, "data=jsonl"))
    assert "data.path is required" in line


def test_a_trl_key_gets_ours(saved):
    proc = run(*saved, "learning_rate=1e-6")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: learning_rate is TRL's name; here it is optimizer.lr=1e-6 (the model's recipe sets it per stage "
        "(model.recipe.lr, lora_lr, sft_lr))"
    ]


def test_an_unreachable_hub_fails_after_one_try_with_the_offline_hint(tmp_path):
    start = time.monotonic()
    proc = run(
        "debug=smoke",
        "model=gpt2",
        f"hydra.run.dir={tmp_path / 'run'}",
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"},
    )
    line = one_error_line(proc)
    assert (
        "model.name_or_path=openai-community/gpt2: the Hugging Face Hub (http://127.0.0.1:9) is not reachable" in line
    )
    assert "HF_HUB_OFFLINE=1" in line and "local folder" in line
    assert time.monotonic() - start < 120  # one try: seconds of it are the imports


def test_help_is_a_short_usage_with_examples_and_the_groups_training_uses():
    proc = run("--help")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) < 40 and sum(line.startswith("  python train.py") for line in lines) == 5
    assert any(line.strip().startswith("loss ") and "[dpo]" in line for line in lines)
    assert not any(line.strip().startswith(("judge", "online")) for line in lines)  # not train.py's groups


def test_plan_only_prints_the_plan_for_a_named_gpu_and_stops(tmp_path):
    out = tmp_path / "plan"
    proc = run("model=llama3_8b", "+plan_only=true", "plan.gpu=H100-80GB", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plan = (out / "plan.txt").read_text()
    assert plan.splitlines()[0] == "Plan (2 stages; nothing has loaded yet):"
    assert "supervised fine-tuning on the chosen answers (SFTLoss); full fine-tuning, lr 2e-05" in plan
    assert "preference loss (loss=dpo, DPOLoss: beta 0.1); full fine-tuning, lr 5e-07" in plan
    assert "device: gpu, precision bf16-mixed, 1 process(es) (planned for 1 x H100-80GB (79 GiB, bf16)" in plan
    assert "[does not fit: the run would stop]" in plan and "trainer=fsdp trainer.devices=2" in plan
    assert "Plain DPO instead" in plan and "experiment=trl" in plan
    assert not (out / "config.yaml").exists() and not (out / "sft").exists()  # nothing trained, nothing loaded
