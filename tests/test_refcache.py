"""Precomputed reference log-probs: the cache's lookup and merge, and a real train.py run that gives the same
numbers as the live reference, then reuses the file (a second job computes nothing)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from torch.testing import assert_close

from conftest import run_script
from dpo_lightning.refcache import ReferenceLogps, fingerprint, load_or_compute
from test_train import TINY


def test_lookup_merge_and_missing_keys(tmp_path):
    cache = ReferenceLogps.build(torch.tensor([30, -5, 7]), torch.tensor([3.0, -0.5, 0.7]), torch.tensor([-3.0, 0.5, -0.7]))
    chosen, rejected = cache.lookup(torch.tensor([7, 30, 7]))
    assert chosen.tolist() == pytest.approx([0.7, 3.0, 0.7]) and rejected.tolist() == pytest.approx([-0.7, -3.0, -0.7])
    assert cache.covers(torch.tensor([-5, 30])) and not cache.covers(torch.tensor([-5, 31]))
    with pytest.raises(KeyError, match="1 pair"):
        cache.lookup(torch.tensor([30, 31]))
    merged = cache.merged(ReferenceLogps.build(torch.tensor([31]), torch.tensor([1.0]), torch.tensor([2.0])))
    assert merged.keys.tolist() == [-5, 7, 30, 31]
    merged.save(tmp_path / "c.pt")
    assert ReferenceLogps.load(tmp_path / "c.pt").keys.tolist() == [-5, 7, 30, 31]
    assert len(ReferenceLogps.load(tmp_path / "absent.pt")) == 0


def test_load_or_compute_scores_only_missing_pairs_and_saves(tmp_path):
    batches = [{"pair_keys": torch.tensor([1, 2])}, {"pair_keys": torch.tensor([3])}]
    scored = []

    def score(batch):
        scored.append(batch["pair_keys"].tolist())
        k = batch["pair_keys"].double()
        return k * 10, -k

    path = tmp_path / "ref" / "x.pt"
    first = load_or_compute(path, score, batches)
    assert scored == [[1, 2], [3]] and first.lookup(torch.tensor([3]))[0].item() == 30
    scored.clear()
    batches.append({"pair_keys": torch.tensor([4, 1])})
    second = load_or_compute(path, score, batches)
    assert scored == [[4, 1]]  # only the batch with a new pair
    assert ReferenceLogps.load(path).keys.tolist() == [1, 2, 3, 4] and len(second) == 4


def test_fingerprint_changes_with_weights_and_precision():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a, "precision=bf16-mixed") != fingerprint(a)
    with torch.no_grad():
        b.weight[0, 0] += 1e-6
    assert fingerprint(a) != fingerprint(b)


def test_train_with_precomputed_reference_matches_live_reference_and_reuses_the_cache(tmp_path):
    common = [*TINY, "trainer.max_steps=3", "callbacks.sample_generations.num_prompts=0"]
    live, cached, again = tmp_path / "live", tmp_path / "cached", tmp_path / "again"
    run_script("train.py", *common, f"hydra.run.dir={live}")
    cache = [f"module.ref_cache_dir={tmp_path / 'cache'}", "module.precompute_ref=true"]
    first = run_script("train.py", *common, *cache, f"hydra.run.dir={cached}")
    assert "0 pairs from the cache" in first.stdout + first.stderr
    files = list((tmp_path / "cache" / "ref_logps").glob("*.pt"))
    assert len(files) == 1 and len(ReferenceLogps.load(files[0])) == 16 + 8  # train + validation pairs
    # a sweep job with another beta, through experiment=low_memory (precompute_ref plus activation checkpointing)
    second = run_script("train.py", *common, "experiment=low_memory", cache[0], "loss.beta=0.5", f"hydra.run.dir={again}")
    assert yaml.safe_load((again / "config.yaml").read_text())["module"]["activation_checkpointing"] is True
    assert "24 pairs from the cache" in second.stdout + second.stderr and "0 computed now" in second.stdout + second.stderr

    m_live, m_cached = (json.loads((run / "metrics.json").read_text()) for run in (live, cached))
    assert "train/kl" not in m_cached  # the exact KL needs the live reference
    shared = sorted(k for k in m_live if k in m_cached and not k.endswith("kl"))
    assert any(k.startswith("val/rewards") for k in shared)
    assert_close(torch.tensor([m_cached[k] for k in shared]), torch.tensor([m_live[k] for k in shared]), rtol=1e-4, atol=1e-5)
