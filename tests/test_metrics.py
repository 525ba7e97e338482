"""Metrics aggregate as sums and counts: any split into batches gives the mean over all pairs and tokens."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from dpo_lightning.metrics import PreferenceMetrics


def values(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) for _ in range(5)]


def test_uneven_batches_aggregate_to_the_global_mean():
    whole = [torch.cat(x) for x in zip(values(3, 0), values(1, 1), values(6, 2))]
    kl_parts = [torch.rand(4), torch.rand(1), torch.rand(11)]
    split = PreferenceMetrics()
    for part, kl in zip((values(3, 0), values(1, 1), values(6, 2)), kl_parts):
        split.update(*part, token_kl=kl)
    got = split.compute()

    losses, chosen, rejected, logp_c, logp_r = whole
    assert_close(got["loss"], losses.mean())
    assert_close(got["rewards/chosen"], chosen.mean())
    assert_close(got["rewards/margins"], (chosen - rejected).mean())
    assert_close(got["rewards/accuracies"], (chosen > rejected).float().mean())
    assert_close(got["logps/rejected"], logp_r.mean())
    assert_close(got["kl"], torch.cat(kl_parts).mean())  # token-weighted, not a mean of batch means
    assert got["kl"] != torch.stack([k.mean() for k in kl_parts]).mean()


def test_accuracy_counts_strict_wins_only():
    m = PreferenceMetrics()
    m.update(torch.zeros(4), torch.tensor([1.0, 0.0, -1.0, 2.0]), torch.tensor([0.0, 0.0, 0.0, 1.0]), torch.zeros(4), torch.zeros(4))
    assert m.compute()["rewards/accuracies"].item() == 0.5  # ties are not wins
    m.reset()
    assert m.compute()["rewards/accuracies"].item() == 0.0
    assert "kl" not in m.compute()
