"""Precomputed reference log-probs: the cache's lookup, merge, load and fingerprint (the real train.py runs are in
e2e/test_reference.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dpo_lightning.core.refcache import ReferenceLogps, fingerprint, load_or_compute


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_any_single_weight_change_changes_the_fingerprint(dtype):
    """Every position of every tensor, changed by the smallest step its dtype allows (the next representable value),
    gives a fingerprint of its own: no two of them, and none equal to the unchanged model's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3)).to(dtype)
    seen = {fingerprint(model)}
    for _, tensor in model.named_parameters():
        for i in range(tensor.numel()):
            with torch.no_grad():
                flat = tensor.view(-1)
                old = flat[i].clone()
                flat[i] = torch.nextafter(old.float(), torch.tensor(float("inf"))).to(dtype)
                if flat[i] == old:  # the float32 step rounded away in a 16-bit dtype: one unit of the last place
                    flat.view(torch.int16)[i] += 1
                seen.add(fingerprint(model))
                flat[i] = old
    assert len(seen) == 1 + sum(p.numel() for p in model.parameters())
    assert fingerprint(model) in seen  # restored: the unchanged model's again


def test_weight_checksum_is_exact_and_independent_of_chunking(monkeypatch):
    import dpo_lightning.core.refcache as refcache

    t = torch.randn(1000)
    bits = t.view(torch.int32).tolist()

    def by_hand(a: int, b: int) -> int:
        return sum(x * (((i * a + b) & (2**64 - 1)) | 1) for i, x in enumerate(bits)) % 2**64

    expected = "-".join(f"{by_hand(a, b):016x}" for a, b in refcache._MIX)
    assert refcache.weight_checksum(t) == expected
    monkeypatch.setattr(refcache, "_CHUNK", 7)  # many chunks, the last one short
    assert refcache.weight_checksum(t) == expected
