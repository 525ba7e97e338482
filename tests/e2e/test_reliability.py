"""Faults: a run killed mid-epoch resumes to the same result; saves are atomic; non-finite steps are caught."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, assert_same_training, compose, run_script, smoke

RUN = [
    "train.py",
    *smoke(
        "data.max_train_pairs=24",
        "trainer.max_epochs=2",
        "callbacks.periodic_checkpoint.every_n_train_steps=1",
        "callbacks.periodic_checkpoint.train_time_interval=null",
        "callbacks.sample_generations.num_prompts=0",
    ),
]


def test_kill_mid_epoch_and_resume_matches_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_script(*RUN, f"hydra.run.dir={straight}")

    proc = subprocess.Popen(
        [sys.executable, *RUN, f"hydra.run.dir={killed}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = killed / "checkpoints" / "step3.ckpt"  # 3 of the first epoch's 6 optimizer steps done
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed / "metrics.json").exists()
    resumed_from = torch.load(killed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)[
        "global_step"
    ]
    assert 2 <= resumed_from < 6, "the kill must land mid-epoch (last.ckpt may trail step3.ckpt by one save)"

    run_script(*RUN, f"hydra.run.dir={killed}", "resume=true")
    assert_same_training(straight, killed)
    # the last k periodic checkpoints are kept (k = 2), plus last.ckpt (a link to the newest) and the best one
    assert sorted(p.name for p in (killed / "checkpoints").glob("step*.ckpt")) == ["step11.ckpt", "step12.ckpt"]
    assert (killed / "checkpoints" / "last.ckpt").resolve().name == "step12.ckpt"


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    from dpo_lightning.lightning.checkpointing import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "step": 1}, path)

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "step": 2}, path)
    monkeypatch.undo()
    assert io.load_checkpoint(path)["step"] == 1  # the previous good one, whole
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"] or all(
        p.name.startswith(".") for p in tmp_path.iterdir() if p.name != "last.ckpt"
    )


def test_final_export_is_atomic(tmp_path, monkeypatch):
    from dpo_lightning.lightning.callbacks import export as export_module
    from dpo_lightning.models import build_tiny_llama

    loaded = build_tiny_llama()
    final = export_module.export_policy(loaded.model, loaded.tokenizer, tmp_path / "final")

    def dies(model, tokenizer, path, state_dict=None):
        path.mkdir(parents=True, exist_ok=True)
        (path / "model.safetensors").write_bytes(b"truncated")
        raise KeyboardInterrupt("killed during export")

    monkeypatch.setattr(export_module, "_save", dies)
    with pytest.raises(KeyboardInterrupt):
        export_module.export_policy(loaded.model, loaded.tokenizer, tmp_path / "final")
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(final).config.model_type == "llama"  # the previous export, intact


def nan_run(tmp_path, action):
    cfg = compose(
        *smoke("data.max_train_pairs=24", "data.max_val_pairs=4", "optimizer.lr=1e-5"),
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "callbacks.periodic_checkpoint.every_n_train_steps=1",
        "callbacks.periodic_checkpoint.train_time_interval=null",
        "callbacks.sample_generations.num_prompts=0",
        f"callbacks.non_finite_guard.action={action}",
        "+callbacks.inject_nan._target_=nan_injection.InjectNaN",
        "+callbacks.inject_nan.at_batch=2",
        output_dir=tmp_path,
    )
    from dpo_lightning.tasks.train import train

    return train(cfg)


def test_injected_nan_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    from dpo_lightning.lightning.callbacks import NonFiniteError

    with pytest.raises(NonFiniteError, match=r"non-finite loss.*at optimizer step 2 \(epoch 0, batch 2\)"):
        nan_run(tmp_path, "stop")
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == 2  # the two good steps; the NaN step was never applied
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())


def test_injected_nan_is_skipped_and_counted_when_asked(tmp_path):
    metrics = nan_run(tmp_path, "skip")
    assert metrics["train/skipped_steps"] == 1.0
    assert all(v == v for v in metrics.values())  # no NaN reached any metric
    from transformers import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert all(torch.isfinite(p).all() for p in final.parameters())


def test_concurrent_runs_share_the_model_cache_without_corrupting_it(tmp_path):
    # Two processes convert the embedded model into the same empty cache at once: one converts under the file
    # lock and renames the finished folder into place; the other waits and reuses it.
    code = (
        "import sys; from dpo_lightning.models.embedded import resolve_embedded; "
        "print(resolve_embedded('embedded:smollm2-135m-instruct', sys.argv[1]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    target = tmp_path / "models" / "smollm2-135m-instruct"
    assert {o[0].strip() for o in outs} == {str(target)}
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "smollm2-135m-instruct",
        "smollm2-135m-instruct.lock",
    ]
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(target).num_parameters() == 134_515_008
