"""Metrics aggregate as sums and counts: any split into batches gives the mean over all pairs and tokens, for the
built-in metrics, a loss's own extras and a metric added to the registry."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from dpo_lightning.core.losses import BCOPairLoss, LossOutput, PairLogps
from dpo_lightning.lightning import metrics as metrics_module
from dpo_lightning.lightning.metrics import PreferenceMetrics


def values(n, seed):
    """(loss output, policy log-probs) of n pairs, and the five raw columns."""
    g = torch.Generator().manual_seed(seed)
    losses, chosen, rejected, logp_c, logp_r = (torch.randn(n, generator=g) for _ in range(5))
    out = LossOutput(losses, chosen, rejected, extras={"extra/x": losses * 2})
    return out, PairLogps(logp_c, logp_r, torch.ones(n), torch.ones(n)), (losses, chosen, rejected, logp_c, logp_r)


def test_uneven_batches_aggregate_to_the_global_mean():
    parts = [values(3, 0), values(1, 1), values(6, 2)]
    kl_parts = [torch.rand(4), torch.rand(1), torch.rand(11)]
    split = PreferenceMetrics(("extra/x",))
    for (out, policy, _), kl in zip(parts, kl_parts):
        split.update(out, policy, token_kl=kl)
    got = split.compute()

    losses, chosen, rejected, logp_c, logp_r = (torch.cat(x) for x in zip(*(raw for _, _, raw in parts)))
    assert_close(got["loss"], losses.mean())
    assert_close(got["rewards/chosen"], chosen.mean())
    assert_close(got["rewards/margins"], (chosen - rejected).mean())
    assert_close(got["rewards/accuracies"], (chosen > rejected).float().mean())
    assert_close(got["logps/chosen"], logp_c.mean())
    assert_close(got["logps/rejected"], logp_r.mean())
    assert_close(got["extra/x"], 2 * losses.mean())  # a loss's extra: the same exact mean over pairs
    assert_close(got["kl"], torch.cat(kl_parts).mean())  # token-weighted, not a mean of batch means
    assert got["kl"] != torch.stack([k.mean() for k in kl_parts]).mean()


def test_accuracy_counts_strict_wins_only():
    m = PreferenceMetrics()
    zeros = PairLogps(torch.zeros(4), torch.zeros(4), torch.ones(4), torch.ones(4))
    m.update(LossOutput(torch.zeros(4), torch.tensor([1.0, 0.0, -1.0, 2.0]), torch.tensor([0.0, 0.0, 0.0, 1.0])), zeros)
    assert m.compute()["rewards/accuracies"].item() == 0.5  # ties are not wins
    m.reset()
    assert m.compute()["rewards/accuracies"].item() == 0.0
    assert "kl" not in m.compute()


def test_a_metric_added_to_the_registry_is_logged(monkeypatch):
    monkeypatch.setitem(metrics_module.PAIR_METRICS, "logps/chosen_per_token", lambda out, policy: policy.chosen_mean)
    m = PreferenceMetrics()
    policy = PairLogps(torch.tensor([-4.0, -9.0]), torch.zeros(2), torch.tensor([2.0, 3.0]), torch.ones(2))
    m.update(LossOutput(torch.zeros(2), torch.zeros(2), torch.zeros(2)), policy)
    assert_close(m.compute()["logps/chosen_per_token"], torch.tensor(-2.5))


def test_bco_reports_its_running_delta():
    loss = BCOPairLoss(beta=0.5)
    m = PreferenceMetrics(loss.extra_metrics)
    policy = PairLogps(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 1.0]), torch.ones(2), torch.ones(2))
    reference = PairLogps(torch.zeros(2), torch.zeros(2), torch.ones(2), torch.ones(2))
    out = loss(policy, reference)
    m.update(out, policy)
    # delta: the mean of every reward seen so far, 0.5 * mean(1, 3, -1, 1) = 0.5
    assert_close(m.compute()["bco/delta"], torch.tensor(0.5))


def test_preference_accuracy_of_the_policy_itself_by_hand():
    m = PreferenceMetrics()
    # pair 1: summed -10 > -12 but per token -10/5 = -2 < -12/8 = -1.5; pair 2: both favour chosen
    logps, tokens = (
        (torch.tensor([-10.0, -3.0]), torch.tensor([-12.0, -9.0])),
        (torch.tensor([5.0, 3.0]), torch.tensor([8.0, 3.0])),
    )
    policy = PairLogps(*logps, *tokens)
    m.update(LossOutput(torch.zeros(2), torch.zeros(2), torch.zeros(2)), policy)
    got = m.compute()
    assert got["preference/accuracy"].item() == 1.0 and got["preference/accuracy_per_token"].item() == 0.5
