"""trainer=fsdp2 (Lightning's ModelParallelStrategy with fully_shard, every decoder layer a unit and the module the
root) on two gloo CPU processes, through the real train.py: it trains as one process does on the same pairs per step
(2 ranks x batch 2 = 1 x batch 4), the tied LM head included, generates its samples on every rank in lockstep,
writes distributed checkpoints and a whole final/, resumes a preempted run exactly (the data position restored
after the strategy's setup built the loader), and precomputes the reference inside the root unit's forward."""

from __future__ import annotations

import json

import pytest
import torch
from test_preemption import signal_at, train_process

from conftest import assert_same_training, check_run_outputs, learning_metrics, run_script, smoke

RUN = [
    "train.py",
    *smoke("data.max_train_pairs=16", "data.max_val_pairs=7", "trainer.max_epochs=2"),
    "callbacks.sample_generations.num_prompts=2",
]
FSDP2 = [
    "trainer=fsdp2",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.precision=32-true",
    "trainer.strategy.process_group_backend=gloo",
    "data.batch_size=2",
]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    run = tmp_path_factory.mktemp("fsdp2") / "run"
    proc = run_script(*RUN, *FSDP2, f"hydra.run.dir={run}")
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    return run


def test_fsdp2_trains_as_one_process_does(sharded, tmp_path):
    single = tmp_path / "single"
    run_script(*RUN, "data.batch_size=4", f"hydra.run.dir={single}")
    m_single, m_sharded = check_run_outputs(single), check_run_outputs(sharded)
    assert sorted(m_single) == sorted(m_sharded)
    for key, value in learning_metrics(m_single).items():
        if not key.endswith("peak_memory_gib"):
            assert m_sharded[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key

    from safetensors.torch import load_file

    a, b = load_file(single / "final" / "model.safetensors"), load_file(sharded / "final" / "model.safetensors")
    assert sorted(a) == sorted(b)  # the tied head written once, as an unsharded save_pretrained writes it
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=name)
    # every rank generated (each forward in lockstep), rank 0 wrote: the samples of the unsharded run
    assert (sharded / "generations" / "samples.jsonl").read_text() == (
        single / "generations" / "samples.jsonl"
    ).read_text()
    (checkpoint,) = [p for p in (sharded / "checkpoints").iterdir() if p.name != "last.ckpt"]
    assert checkpoint.is_dir() and len(list(checkpoint.glob("*.distcp"))) == 2  # a shard per rank


def test_fsdp2_preempted_on_one_rank_resumes_exactly(sharded, tmp_path):
    run = tmp_path / "run"
    proc = train_process(*RUN, *FSDP2, *signal_at(2, "SIGTERM", rank=1), f"hydra.run.dir={run}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 75, out[-3000:]
    assert "preempted by SIGTERM after optimizer step 3" in out
    assert (run / "checkpoints" / "last.ckpt").resolve().name == "step3.ckpt"
    resumed = train_process(*RUN, *FSDP2, f"hydra.run.dir={run}", "resume=true")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    assert_same_training(sharded, run)
    # the resumed run's last save replaced the last.ckpt link, not the checkpoint it pointed to
    saved = torch.load(run / "checkpoints" / "step3.ckpt" / "meta.pt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 3 and saved["PreferenceDataModule"]["train_position"] == {
        "epoch": 0,
        "batches_done": 3,
    }


def test_fsdp2_precomputed_reference_gives_the_live_references_training(sharded, tmp_path):
    run = tmp_path / "run"
    run_script(
        *RUN, *FSDP2, "module.precompute_ref=true", f"module.ref_cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"
    )
    live, cached = (json.loads((r / "metrics.json").read_text()) for r in (sharded, run))
    for key in ("train/loss", "val/loss", "val/rewards/margins", "val/rewards/accuracies", "train/rewards/chosen"):
        assert cached[key] == pytest.approx(live[key], rel=1e-4, abs=1e-6), key
    assert len(list((tmp_path / "cache" / "ref_logps").glob("*.pt"))) == 1  # one cache file, the same key on both ranks
    # the key is taken before sharding, so a one-process run of the same reference reads every pair from it
    cache = f"module.ref_cache_dir={tmp_path / 'cache'}"
    proc = run_script(
        *RUN, "trainer.max_steps=1", "module.precompute_ref=true", cache, f"hydra.run.dir={tmp_path / 'one'}"
    )
    assert "reference log-probs: 23 pairs from the cache" in proc.stdout + proc.stderr


def test_fsdp2_lora_trains_the_adapter_one_process_trains(tmp_path):
    """Under LoRA the reference is the sharded policy with its adapter off; the adapter equals one process's."""
    from safetensors.torch import load_file

    lora = [*RUN, "peft=lora", "trainer.max_epochs=1"]
    single, run = tmp_path / "single", tmp_path / "run"
    run_script(*lora, "data.batch_size=4", f"hydra.run.dir={single}")
    run_script(*lora, *FSDP2, f"hydra.run.dir={run}")
    a = load_file(single / "final" / "adapter_model.safetensors")
    b = load_file(run / "final" / "adapter_model.safetensors")
    assert sorted(a) == sorted(b) and any(v.abs().max() > 0 for k, v in a.items() if "lora_B" in k)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=name)
