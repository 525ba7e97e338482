"""The precomputed reference in real train.py runs: the same numbers as the live reference, then the cache file
reused by a second job that computes nothing."""

from __future__ import annotations

import json

import torch
import yaml
from torch.testing import assert_close

from conftest import SMOKE, learning_metrics, run_script
from dpo_lightning.core.refcache import ReferenceLogps


def test_train_with_precomputed_reference_matches_live_reference_and_reuses_the_cache(tmp_path):
    common = [*SMOKE, "trainer.max_steps=3", "callbacks.sample_generations.num_prompts=0"]
    live, cached, again = tmp_path / "live", tmp_path / "cached", tmp_path / "again"
    run_script("train.py", *common, f"hydra.run.dir={live}")
    cache = [f"module.ref_cache_dir={tmp_path / 'cache'}", "module.precompute_ref=true"]
    first = run_script("train.py", *common, *cache, f"hydra.run.dir={cached}")
    assert "0 pairs from the cache" in first.stdout + first.stderr
    files = list((tmp_path / "cache" / "ref_logps").glob("*.pt"))
    assert len(files) == 1 and len(ReferenceLogps.load(files[0])) == 16 + 8  # train + validation pairs
    # a sweep job with another beta, through experiment=low_memory (precompute_ref plus activation checkpointing)
    second = run_script(
        "train.py", *common, "experiment=low_memory", cache[0], "loss.beta=0.5", f"hydra.run.dir={again}"
    )
    assert yaml.safe_load((again / "config.yaml").read_text())["module"]["activation_checkpointing"] is True
    assert (
        "24 pairs from the cache" in second.stdout + second.stderr and "0 computed now" in second.stdout + second.stderr
    )

    m_live, m_cached = (learning_metrics(json.loads((run / "metrics.json").read_text())) for run in (live, cached))
    assert "train/kl" not in m_cached  # the exact KL needs the live reference
    shared = sorted(k for k in m_live if k in m_cached and not k.endswith("kl"))
    assert any(k.startswith("val/rewards") for k in shared)
    assert_close(
        torch.tensor([m_cached[k] for k in shared]), torch.tensor([m_live[k] for k in shared]), rtol=1e-4, atol=1e-5
    )
