"""Precomputed reference log-probs: the cache's lookup, merge, load and fingerprint (the real train.py runs are in
e2e/test_reference.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dpo_lightning.refcache import ReferenceLogps, fingerprint, load_or_compute


def test_lookup_merge_and_missing_keys(tmp_path):
    cache = ReferenceLogps.build(
        torch.tensor([30, -5, 7]), torch.tensor([3.0, -0.5, 0.7]), torch.tensor([-3.0, 0.5, -0.7])
    )
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
    keyed = lambda *keys: SimpleNamespace(pair_keys=torch.tensor(keys))  # noqa: E731  (all the cache reads)
    batches = [keyed(1, 2), keyed(3)]
    scored = []

    def score(batch):
        scored.append(batch.pair_keys.tolist())
        k = batch.pair_keys.double()
        return k * 10, -k

    path = tmp_path / "ref" / "x.pt"
    first = load_or_compute(path, score, batches)
    assert scored == [[1, 2], [3]] and first.lookup(torch.tensor([3]))[0].item() == 30
    scored.clear()
    batches.append(keyed(4, 1))
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
