"""Preemption loses at most one step: real train.py processes stopped by SIGTERM or SIGUSR1 (in one process, or on
one rank of two under gloo DDP) save a checkpoint at that step, exit with status 75, and resume to the same result
as an uninterrupted run; a truncated newest checkpoint and a damaged reference cache are survived."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT, assert_same_training, learning_metrics, run_script, smoke
from dpo_lightning.lightning.callbacks import PREEMPTED_EXIT_CODE

HERE = os.path.dirname(__file__)
RUN = [
    "train.py",
    *smoke("data.max_train_pairs=24", "trainer.max_epochs=2", "callbacks.sample_generations.num_prompts=0"),
]


def signal_at(step: int, name: str, rank: int = 0) -> list[str]:
    return [
        "+callbacks.send_signal._target_=signal_injection.SendSignal",
        f"+callbacks.send_signal.at_step={step}",
        f"+callbacks.send_signal.signal_name={name}",
        f"+callbacks.send_signal.rank={rank}",
    ]


def train_process(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    run_script(*RUN, f"hydra.run.dir={run}")
    return run


@pytest.mark.parametrize("name", ["SIGTERM", "SIGUSR1"])
def test_a_signal_mid_epoch_checkpoints_that_step_exits_75_and_resumes_exactly(name, uninterrupted, tmp_path):
    run = tmp_path / "run"
    # the signal lands at the start of optimizer step 3 (of 6 per epoch): that step is finished, then saved
    proc = train_process(*RUN, *signal_at(3, name), f"hydra.run.dir={run}")
    assert proc.returncode == PREEMPTED_EXIT_CODE == 75, proc.stderr[-3000:]
    assert f"preempted by {name} after optimizer step 4" in proc.stdout + proc.stderr
    assert not (run / "metrics.json").exists() and not (run / "final").exists()
    assert (run / "checkpoints" / "last.ckpt").resolve().name == "step4.ckpt"
    saved = torch.load(run / "checkpoints" / "step4.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 4 and saved["PreferenceDataModule"]["train_position"]["batches_done"] == 4

    resumed = train_process(*RUN, *signal_at(3, name), f"hydra.run.dir={run}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(uninterrupted, run)


def test_a_lora_run_resumes_exactly_from_a_checkpoint_without_the_frozen_base(tmp_path):
    """A LoRA checkpoint holds the adapter and its optimizer state; the resume loads the base from the config."""
    lora = ["peft=lora", "peft.r=2", "peft.alpha=4"]
    straight, run = tmp_path / "straight", tmp_path / "run"
    run_script(*RUN, *lora, f"hydra.run.dir={straight}")
    proc = train_process(*RUN, *lora, *signal_at(3, "SIGTERM"), f"hydra.run.dir={run}")
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    saved = torch.load(run / "checkpoints" / "step4.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    assert saved and all("lora_" in key for key in saved), sorted(saved)[:5]
    resumed = train_process(*RUN, *lora, f"hydra.run.dir={run}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(straight, run)


def test_ddp_stops_every_rank_at_the_same_step_when_one_rank_is_signalled(tmp_path):
    ddp = ["trainer=ddp_cpu", "trainer.devices=2", "data.batch_size=2"]
    straight, run = tmp_path / "straight", tmp_path / "run"
    run_script(*RUN, *ddp, f"hydra.run.dir={straight}")
    proc = train_process(*RUN, *ddp, *signal_at(2, "SIGTERM", rank=1), f"hydra.run.dir={run}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == PREEMPTED_EXIT_CODE, out[-3000:]
    assert "received SIGTERM" in out and "preempted by SIGTERM after optimizer step 3" in out  # rank 1's signal
    assert (run / "checkpoints" / "last.ckpt").resolve().name == "step3.ckpt"
    resumed = train_process(*RUN, *ddp, *signal_at(2, "SIGTERM", rank=1), f"hydra.run.dir={run}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_training(straight, run)


def test_a_truncated_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    every_step = [
        "callbacks.periodic_checkpoint.every_n_train_steps=1",
        "callbacks.periodic_checkpoint.train_time_interval=null",
        "trainer.max_steps=4",
    ]
    run = tmp_path / "run"
    run_script(*RUN, *every_step, f"hydra.run.dir={run}")
    first = json.loads((run / "metrics.json").read_text())
    newest = (run / "checkpoints" / "last.ckpt").resolve()
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a copy cut short
    proc = run_script(*RUN, *every_step, f"hydra.run.dir={run}", "resume=true")
    out = proc.stdout + proc.stderr
    assert f"skipping checkpoint {run / 'checkpoints' / 'last.ckpt'}" in out and "truncated" in out
    again = json.loads((run / "metrics.json").read_text())
    for key, value in learning_metrics(first).items():
        assert again[key] == pytest.approx(value, abs=1e-5), key


def test_a_damaged_reference_cache_is_recomputed_with_a_warning(tmp_path):
    common = [*RUN, "trainer.max_steps=3", "module.precompute_ref=true", f"module.ref_cache_dir={tmp_path / 'cache'}"]
    clean, again = tmp_path / "clean", tmp_path / "again"
    run_script(*common, f"hydra.run.dir={clean}")
    (cache,) = (tmp_path / "cache" / "ref_logps").glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:100])
    proc = run_script(*common, f"hydra.run.dir={again}")
    out = proc.stdout + proc.stderr
    assert f"reference log-prob cache {cache} is damaged" in out and "0 pairs from the cache" in out
    from dpo_lightning.core.refcache import ReferenceLogps

    assert len(ReferenceLogps.load(cache)) == 24 + 8  # rewritten whole
    a = learning_metrics(json.loads((clean / "metrics.json").read_text()))
    b = learning_metrics(json.loads((again / "metrics.json").read_text()))
    for key in a:
        assert b[key] == pytest.approx(a[key], abs=1e-5), key


def test_the_signal_is_handed_on_to_the_handler_installed_before_the_run(tmp_path):
    """As under submitit (SIGUSR2 requeues the job): after the checkpoint, the earlier handler gets the signal, and
    the handlers are back as they were once the run has stopped."""
    import signal

    from conftest import compose
    from dpo_lightning.lightning.callbacks import Preempted
    from dpo_lightning.tasks.train import train

    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    try:
        sys.path.insert(0, HERE)
        cfg = compose(
            *smoke(
                "trainer.max_steps=6", "trainer.enable_progress_bar=false", "callbacks.sample_generations.num_prompts=0"
            ),
            *signal_at(1, "SIGUSR2"),
            output_dir=tmp_path,
        )
        with pytest.raises(Preempted) as stopped:
            train(cfg)
        assert stopped.value.code == PREEMPTED_EXIT_CODE and calls == [signal.SIGUSR2]
        assert (tmp_path / "checkpoints" / "last.ckpt").resolve().name == "step2.ckpt"
        os.kill(os.getpid(), signal.SIGUSR2)  # once the run is over, the signal reaches the earlier handler again
        assert calls == [signal.SIGUSR2, signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
        sys.path.remove(HERE)


def test_a_reward_model_run_stopped_by_sigterm_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    args = ["train_reward.py", *smoke("data.max_train_pairs=24", "trainer.max_epochs=2", "optimizer.lr=1e-3")]
    straight, run = tmp_path / "straight", tmp_path / "run"
    run_script(*args, f"hydra.run.dir={straight}")
    stopped = train_process(*args, *signal_at(3, "SIGTERM"), f"hydra.run.dir={run}")
    assert stopped.returncode == PREEMPTED_EXIT_CODE, stopped.stderr[-3000:]
    resumed = train_process(*args, *signal_at(3, "SIGTERM"), f"hydra.run.dir={run}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ma, mb = (learning_metrics(json.loads((r / "metrics.json").read_text())) for r in (straight, run))
    assert ma.keys() == mb.keys() and all(mb[k] == pytest.approx(ma[k], abs=1e-5) for k in ma)
    wa, wb = (load_file(r / "final" / "model.safetensors") for r in (straight, run))
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-6, msg=name)


PIPELINE = [  # the default: the SFT stage, then DPO from it; the tiny model and a few pairs (debug=smoke's sizes)
    "train.py",
    "model=tiny",
    "data.max_train_pairs=16",
    "data.max_val_pairs=8",
    "data.batch_size=4",
    "optimizer.lr=1e-3",
    "callbacks.sample_generations.num_prompts=0",
    'before.sft=["stage=sft","trainer.max_steps=2"]',  # 2 SFT steps, then 4 of DPO
]


def test_the_default_pipeline_trains_sft_then_dpo_and_resumes_across_the_stages(tmp_path):
    straight = tmp_path / "straight"
    run_script(*PIPELINE, f"hydra.run.dir={straight}")
    sft = yaml.safe_load((straight / "sft" / "config.yaml").read_text())
    dpo = yaml.safe_load((straight / "config.yaml").read_text())
    assert sft["loss"]["_target_"].endswith("SFTLoss") and sft["optimizer"]["lr"] == 1e-3 and sft["before"] is None
    assert sft["module"]["compute_kl"] is False and sft["trainer"]["max_steps"] == 2
    assert dpo["loss"]["_target_"].endswith("DPOLoss") and dpo["model"]["init_from"] == str(straight / "sft")
    first = next(csv.DictReader(open(straight / "csv" / "metrics.csv")))
    assert float(first["train/loss"]) == pytest.approx(math.log(2), abs=1e-6)  # the policy starts as its reference

    # stopped by SIGTERM in the DPO stage (at step 2: the SFT stage has only steps 0 and 1), then resumed: the finished
    # SFT stage is not trained again, the DPO stage continues from its checkpoint, both end as the uninterrupted run
    run = tmp_path / "run"
    proc = train_process(*PIPELINE, *signal_at(2, "SIGTERM"), f"hydra.run.dir={run}")
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    assert (run / "sft" / "final").is_dir() and not (run / "final").exists()
    resumed = train_process(*PIPELINE, f"hydra.run.dir={run}", "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"stage sft: finished, in {run / 'sft'}" in resumed.stdout + resumed.stderr
    assert_same_training(straight / "sft", run / "sft")
    assert_same_training(straight, run)


def test_tr_dpo_resumed_mid_epoch_has_the_reference_of_an_uninterrupted_run(tmp_path):
    """The reference synced every 2 steps; the signal's checkpoint (step 4) falls on a sync."""
    tr_dpo = [*RUN, "module=tr_dpo", "module.ref_sync_steps=2", "module.ref_sync_alpha=0.5"]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_script(*tr_dpo, f"hydra.run.dir={straight}")
    proc = train_process(*tr_dpo, *signal_at(3, "SIGTERM"), f"hydra.run.dir={stopped}")
    assert proc.returncode == PREEMPTED_EXIT_CODE, proc.stderr[-3000:]
    assert train_process(*tr_dpo, f"hydra.run.dir={stopped}", "resume=true").returncode == 0
    assert_same_training(straight, stopped)

    def reference(run):
        state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
        return {k: v for k, v in state.items() if k.startswith("reference.")}

    a, b = reference(straight), reference(stopped)
    assert a and a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    at_signal = torch.load(stopped / "checkpoints" / "step4.ckpt", map_location="cpu", weights_only=False)
    assert at_signal["global_step"] == 4 and any(k.startswith("reference.") for k in at_signal["state_dict"])
    with open(straight / "csv" / "metrics.csv") as f:
        syncs = [float(r["train/reference_syncs"]) for r in csv.DictReader(f) if r.get("train/loss")]
    assert syncs == [step // 2 for step in range(12)]  # the syncs before each of the 12 steps, one every 2
