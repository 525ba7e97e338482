"""KTO against the paper's formula by hand (float64), its edge cases (a batch of desirable rows only, a negative KL
estimate clamped to 0), the per-label metrics, and its advice on the balance of labels."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from test_losses import POLICY, REFERENCE, pairs, sig
from torch.testing import assert_close

from dpo_lightning.core.losses import KTOLoss, SFTLoss
from dpo_lightning.lightning.metrics import PreferenceMetrics

T = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731

# Four rows: completion log-probs (policy, reference), the mismatched completion's, and the labels.
PI, REF = [-10.0, -20.0, -14.0, -15.0], [-12.0, -18.0, -13.0, -16.0]
PI_KL, REF_KL = [-30.0, -25.0, -40.0, -22.0], [-31.0, -27.0, -39.5, -23.0]
LABELS = [1, 0, 1, 0]


def rows(labels=LABELS, pi_kl=PI_KL, ref_kl=REF_KL):
    lengths = [4.0] * len(labels)
    policy = replace(pairs(PI, pi_kl, lc=lengths, lr=lengths), labels=torch.tensor(labels))
    return policy, pairs(REF, ref_kl, lc=lengths, lr=lengths)


def by_hand(beta, labels, pi_kl, ref_kl, w_d=1.0, w_u=1.0):
    z0 = max(0.0, sum(p - r for p, r in zip(pi_kl, ref_kl)) / len(pi_kl))
    out = []
    for i, label in enumerate(labels):
        r = PI[i] - REF[i]
        out.append(w_d * (1 - sig(beta * (r - z0))) if label else w_u * (1 - sig(beta * (z0 - r))))
    return T(out), z0


def test_kto_by_hand():
    beta = 0.1
    expected, z0 = by_hand(beta, LABELS, PI_KL, REF_KL, 1.5, 0.7)
    assert z0 == pytest.approx((1 + 2 - 0.5 + 1) / 4)  # the mismatched log-ratios' mean, positive here
    out = KTOLoss(beta, desirable_weight=1.5, undesirable_weight=0.7)(*rows())
    assert_close(out.losses, expected, rtol=1e-12, atol=1e-12)
    assert_close(out.chosen_rewards, T([beta * (PI[i] - REF[i]) for i in range(4)]))
    assert_close(out.rejected_rewards, T([beta * z0] * 4))
    assert_close(out.extras["kto/kl"], T([z0] * 4))
    nan = float("nan")
    assert_close(out.extras["kto/rewards_desirable"], T([0.2, nan, -0.1, nan]), equal_nan=True)
    assert_close(out.extras["kto/rewards_undesirable"], T([nan, -0.2, nan, 0.1]), equal_nan=True)


def test_a_negative_kl_estimate_is_clamped_to_zero():
    below = [r - 3.0 for r in REF_KL]  # the policy below the reference on every mismatched completion
    expected, z0 = by_hand(0.1, LABELS, below, REF_KL)
    assert z0 == 0.0
    assert_close(KTOLoss(0.1)(*rows(pi_kl=below)).losses, expected, rtol=1e-12, atol=1e-12)


def test_a_batch_of_desirable_rows_only():
    labels = [1, 1, 1, 1]
    expected, _ = by_hand(0.1, labels, PI_KL, REF_KL)
    out = KTOLoss(0.1)(*rows(labels))
    assert_close(out.losses, expected, rtol=1e-12, atol=1e-12)
    assert out.extras["kto/rewards_undesirable"].isnan().all()
    metrics = PreferenceMetrics(KTOLoss.extra_metrics)
    metrics.update(out, rows(labels)[0])
    values = metrics.compute()
    assert math.isnan(values["kto/rewards_undesirable"])  # no undesirable row: no value, not a 0
    assert values["kto/rewards_desirable"].item() == pytest.approx(0.1 * sum(p - r for p, r in zip(PI, REF)) / 4)
    # over a second batch with both labels, each label's mean is over its own rows only
    metrics.update(KTOLoss(0.1)(*rows()), rows()[0])
    values = metrics.compute()
    assert values["kto/rewards_undesirable"].item() == pytest.approx((-0.2 + 0.1) / 2)
    desirable = [0.1 * (PI[i] - REF[i]) for i in range(4)] + [0.2, -0.1]
    assert values["kto/rewards_desirable"].item() == pytest.approx(sum(desirable) / 6)


def test_kto_refuses_preference_pairs_and_names_the_fix():
    with pytest.raises(ValueError, match="data=unpaired"):
        KTOLoss(0.1)(POLICY, REFERENCE)
    with pytest.raises(ValueError, match="desirable_weight"):
        KTOLoss(0.1, desirable_weight=0.0)


def test_the_papers_advice_on_imbalance():
    loss = KTOLoss(0.1)
    assert loss.balance_advice(100, 100) is None and loss.balance_advice(130, 100) is None  # ratio in [1, 4/3]
    message = loss.balance_advice(100, 400)  # 0.25: too few desirable rows for equal weights
    assert "0.25" in message and "loss.desirable_weight=4" in message and "loss.undesirable_weight=0.25" in message
    assert "no undesirable" in loss.balance_advice(10, 0)
    assert loss.data_advice(None) is None and "outside" in loss.data_advice({"desirable": 1, "undesirable": 3})


def test_sft_on_unpaired_rows_learns_the_desirable_completions_only():
    policy, _ = rows()
    lengths = 4.0
    expected = [-PI[i] / lengths for i in range(4)]
    got = SFTLoss()(policy, None).losses
    assert_close(got.mean(), T((expected[0] + expected[2]) / 2))  # the batch mean is the desirable rows' mean
    assert_close(got[[1, 3]], T([0.0, 0.0]))
    assert_close(SFTLoss()(POLICY, None).losses, T([10.0 / 5, 20.0 / 10]))  # pairs: unchanged
