"""A real 2-process DDP run (gloo, CPU) of train.py: it completes, writes what a single-process run writes, and
reports the same metrics as one process trained on the same pairs per step (2 ranks x batch 2 = 1 x batch 4)."""

from __future__ import annotations

import json
import socket

import pytest
import torch

from conftest import SMOKE, check_run_outputs, run_script

ONE_STEP_PAIRS = [
    "data.max_train_pairs=16",
    "data.max_val_pairs=7",
    "trainer.max_epochs=2",
    "callbacks.sample_generations.num_prompts=2",
]


def test_two_process_ddp_matches_one_process(tmp_path):
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    run_script("train.py", *SMOKE, *ONE_STEP_PAIRS, "data.batch_size=4", f"hydra.run.dir={single}")
    proc = run_script(
        "train.py",
        *SMOKE,
        *ONE_STEP_PAIRS,
        "trainer=ddp_cpu",
        "trainer.devices=2",
        "data.batch_size=2",
        f"hydra.run.dir={ddp}",
    )
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr

    m_single, m_ddp = check_run_outputs(single), check_run_outputs(ddp)
    assert sorted(m_single) == sorted(m_ddp)
    single_files = {
        p.relative_to(single).as_posix() for p in single.rglob("*") if p.is_file() and ".hydra" not in p.parts
    }
    ddp_files = {p.relative_to(ddp).as_posix() for p in ddp.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    assert single_files - ddp_files == set(), "files a single-process run writes are missing under DDP"

    # 7 validation pairs over 2 ranks (4 + 3, none repeated): the reduced metrics are those of all 7 pairs.
    assert m_ddp["val/rewards/accuracies"] == m_single["val/rewards/accuracies"]
    for key in ("val/loss", "val/rewards/margins", "val/logps/chosen", "train/loss", "train/rewards/margins"):
        assert m_ddp[key] == pytest.approx(m_single[key], rel=1e-4, abs=1e-6), key

    from transformers import AutoModelForCausalLM

    a = AutoModelForCausalLM.from_pretrained(single / "final").state_dict()
    b = AutoModelForCausalLM.from_pretrained(ddp / "final").state_dict()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-6, msg=name)
    assert json.loads((ddp / "data_report.json").read_text())["train"]["pairs"] == 16


@pytest.mark.parametrize("head", ["untied", "tied"])
def test_fsdp_full_shard_keeps_the_tiled_head_and_its_gradients(head, tmp_path):
    """Two gloo processes, FULL_SHARD: rank 1 holds none of the LM head's weight, yet the tiled head gathers it inside
    the root unit's forward (as Lightning runs training_step) and every gradient equals one unsharded process's."""
    with socket.socket() as s:  # a free port for the process group
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    run_script("tests/e2e/fsdp_worker.py", port, head, str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["rank"] for r in ranks) == [0, 1]
    assert min(r["head_elements_here"] for r in ranks) < ranks[0]["head_elements"]  # the head really is sharded
    for r in ranks:
        assert r["loss"] == pytest.approx(r["expected"], rel=1e-6)
        assert r["max_grad_diff"] <= 1e-6


def test_precomputed_reference_under_fsdp_runs_inside_the_sharded_module(tmp_path):
    """module.precompute_ref under FSDP FULL_SHARD on two gloo processes: the reference's pass runs inside the root
    unit's forward, both ranks call it equally often (rank 1 owns 1 of the 3 batches and repeats it once), and the
    gathered log-probs equal the unsharded reference's; the cache key, taken before sharding, agrees across ranks.
    Under FSDP's bf16 mixed precision too (what failed on a GPU when the pass ran outside the root unit)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    run_script("tests/e2e/fsdp_worker.py", port, "untied", str(tmp_path), "precompute")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["calls"] for r in ranks] == [2, 2]  # lockstep: 2 own batches on rank 0, 1 + a repeat on rank 1
    assert min(r["reference_elements_here"] for r in ranks) < ranks[0]["reference_elements"]  # really sharded
    assert ranks[0]["key"] == ranks[1]["key"]
    for r in ranks:
        assert r["pairs"] == 6 and r["max_diff"] <= 1e-6
        assert r["bf16_max_rel_diff"] <= 2e-2  # under bf16 mixed precision: runs, and agrees to bf16's precision
        assert r["outside_root"] != "ran"  # the same pass outside the root unit fails: the root's forward is needed


def test_sample_generations_under_fsdp_run_on_every_rank_with_the_root_gathered(tmp_path):
    """trainer=fsdp (FSDP1) on two gloo processes: outside a training step the root unit's weights are flat shards, so
    the policy and the reference cannot generate; gathered_root (what the sample-generations callback uses) gathers
    them on every rank, and the ranks' greedy answers, generated in lockstep, are the unsharded models'."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    run_script("tests/e2e/fsdp_worker.py", port, "tied", str(tmp_path), "generate")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r in ranks:
        assert r["ungathered"] != "ran" and r["gathered"] is True and r["same"] is True, r
        assert isinstance(r["bf16"], list), r["bf16"]  # under bf16 mixed precision too (autocast at its dtype)
    assert ranks[0]["bf16"] == ranks[1]["bf16"]  # in lockstep: the same greedy answers on both ranks
