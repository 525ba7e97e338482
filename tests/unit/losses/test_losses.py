"""Every loss against values computed by hand from its paper's formula (plain `math`, no torch)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from dpo_lightning.core.losses import (
    APODownLoss,
    APOZeroLoss,
    BCOPairLoss,
    DPOLoss,
    EXOPairLoss,
    HingeLoss,
    IPOLoss,
    NCAPairLoss,
    ORPOLoss,
    PairLogps,
    RobustLoss,
    RPOLoss,
    SFTLoss,
    SimPOLoss,
    SPPOHardLoss,
)

# Two pairs. Policy / reference summed log-probs and response lengths.
PI_C, PI_R = [-10.0, -20.0], [-14.0, -15.0]
REF_C, REF_R = [-12.0, -18.0], [-13.0, -16.0]
LEN_C, LEN_R = [5.0, 10.0], [7.0, 4.0]


def pairs(c, r, lc=LEN_C, lr=LEN_R) -> PairLogps:
    t = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
    return PairLogps(t(c), t(r), t(lc), t(lr))


POLICY, REFERENCE = pairs(PI_C, PI_R), pairs(REF_C, REF_R)


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def per_pair(fn) -> torch.Tensor:
    return torch.tensor([fn(i) for i in range(2)], dtype=torch.float64)


def r_w(i):  # chosen log-ratio
    return PI_C[i] - REF_C[i]


def r_l(i):
    return PI_R[i] - REF_R[i]


def h(i):  # DPO's log-ratio difference: pair 0: 2 - (-1) = 3; pair 1: -2 - 1 = -3
    return r_w(i) - r_l(i)


def check(loss, expected, policy=POLICY, reference=REFERENCE):
    out = loss(policy, reference)
    assert_close(out.losses, expected, rtol=1e-12, atol=1e-12)
    return out


def test_dpo_sigmoid():
    beta = 0.1
    out = check(DPOLoss(beta), per_pair(lambda i: -logsig(beta * h(i))))
    assert_close(out.chosen_rewards, per_pair(lambda i: beta * r_w(i)))
    assert_close(out.rejected_rewards, per_pair(lambda i: beta * r_l(i)))
    # pair 0 by hand: -log sigmoid(0.3) = log(1 + e^-0.3) = 0.554355...
    assert out.losses[0].item() == pytest.approx(0.5543552444685271, abs=1e-12)


def test_conservative_dpo_label_smoothing():
    beta, eps = 0.5, 0.2
    check(
        DPOLoss(beta, label_smoothing=eps),
        per_pair(lambda i: -(1 - eps) * logsig(beta * h(i)) - eps * logsig(-beta * h(i))),
    )


def test_reference_free_dpo_ignores_the_reference():
    beta = 0.1
    loss = DPOLoss(beta, reference_free=True)
    assert not loss.requires_reference
    out = check(loss, per_pair(lambda i: -logsig(beta * (PI_C[i] - PI_R[i]))), reference=None)
    assert_close(out.chosen_rewards, per_pair(lambda i: beta * PI_C[i]))
    check(loss, per_pair(lambda i: -logsig(beta * (PI_C[i] - PI_R[i]))))  # a given reference is not used


def test_ipo_uses_length_normalised_log_ratios():
    beta = 0.1

    def expected(i):
        hn = (PI_C[i] / LEN_C[i] - REF_C[i] / LEN_C[i]) - (PI_R[i] / LEN_R[i] - REF_R[i] / LEN_R[i])
        return (hn - 1 / (2 * beta)) ** 2

    check(IPOLoss(beta), per_pair(expected))


def test_hinge():
    beta = 0.5
    check(HingeLoss(beta), per_pair(lambda i: max(0.0, 1 - beta * h(i))))  # pair 0: 1 - 1.5 < 0 -> 0; pair 1: 2.5


def test_robust():
    beta, eps = 0.1, 0.1
    check(
        RobustLoss(beta, eps),
        per_pair(lambda i: (-(1 - eps) * logsig(beta * h(i)) + eps * logsig(-beta * h(i))) / (1 - 2 * eps)),
    )


def test_robust_with_no_noise_is_dpo():
    assert_close(RobustLoss(0.1, 0.0)(POLICY, REFERENCE).losses, DPOLoss(0.1)(POLICY, REFERENCE).losses)


def test_simpo():
    beta, gamma = 2.0, 1.0
    loss = SimPOLoss(beta, gamma)
    assert not loss.requires_reference
    out = check(
        loss, per_pair(lambda i: -logsig(beta * (PI_C[i] / LEN_C[i] - PI_R[i] / LEN_R[i]) - gamma)), reference=None
    )
    assert_close(out.chosen_rewards, per_pair(lambda i: beta * PI_C[i] / LEN_C[i]))


def test_orpo():
    lam = 0.1

    # Per-token mean log-probs must be < 0 for odds to exist; pair 0: -2 and -2, pair 1: -2 and -3.75.
    def expected(i):
        mc, mr = PI_C[i] / LEN_C[i], PI_R[i] / LEN_R[i]
        log_odds = (mc - math.log(1 - math.exp(mc))) - (mr - math.log(1 - math.exp(mr)))
        return -mc - lam * logsig(log_odds)

    check(ORPOLoss(lam), per_pair(expected), reference=None)


def test_orpo_stays_finite_near_probability_one():
    policy = pairs([-1e-9, -50.0], [-1e-3, -1e-9], lc=[1.0, 1.0], lr=[1.0, 1.0])
    out = ORPOLoss(0.1)(policy, None)
    assert torch.isfinite(out.losses).all()


def test_rpo_adds_length_normalised_chosen_nll():
    beta, alpha = 0.1, 1.0
    check(RPOLoss(beta, alpha), per_pair(lambda i: -logsig(beta * h(i)) + alpha * (-PI_C[i] / LEN_C[i])))


def test_sft_is_chosen_nll():
    loss = SFTLoss()
    assert not loss.requires_reference
    check(loss, per_pair(lambda i: -PI_C[i] / LEN_C[i]), reference=None)


def test_bco_pair_running_mean():
    beta = 0.1
    loss = BCOPairLoss(beta)
    rewards = [beta * r_w(0), beta * r_w(1), beta * r_l(0), beta * r_l(1)]
    delta = sum(rewards) / 4  # first batch: the running mean is this batch's mean
    out = check(loss, per_pair(lambda i: -logsig(beta * r_w(i) - delta) - logsig(-(beta * r_l(i) - delta))))
    assert loss.reward_mean.item() == pytest.approx(delta)
    # second batch: mean over all 8 rewards seen so far
    other = pairs([-1.0, -2.0], [-3.0, -4.0])
    loss(other, pairs([0.0, 0.0], [0.0, 0.0]))
    assert loss.reward_mean.item() == pytest.approx((sum(rewards) + beta * (-1 - 2 - 3 - 4)) / 8)
    loss.eval()  # evaluation does not move delta
    before = loss.reward_mean.item()
    loss(POLICY, REFERENCE)
    assert loss.reward_mean.item() == before
    assert out.losses.shape == (2,)


def test_apo_zero():
    beta = 0.1
    check(APOZeroLoss(beta), per_pair(lambda i: (1 - sig(beta * r_w(i))) + sig(beta * r_l(i))))


def test_apo_down():
    beta = 0.1
    check(APODownLoss(beta), per_pair(lambda i: sig(beta * r_w(i)) + (1 - sig(beta * (r_w(i) - r_l(i))))))


def test_sppo_hard():
    beta = 0.1
    check(SPPOHardLoss(beta), per_pair(lambda i: (r_w(i) - 1 / (2 * beta)) ** 2 + (r_l(i) + 1 / (2 * beta)) ** 2))


def test_nca_pair():
    beta = 0.1
    check(
        NCAPairLoss(beta),
        per_pair(lambda i: -logsig(beta * r_w(i)) - 0.5 * logsig(-beta * r_w(i)) - 0.5 * logsig(-beta * r_l(i))),
    )


def test_exo_pair():
    beta, eps = 0.1, 1e-3

    def expected(i):
        z = beta * h(i)
        return sig(z) * (logsig(z) - math.log(1 - eps)) + sig(-z) * (logsig(-z) - math.log(eps))

    check(EXOPairLoss(beta, eps), per_pair(expected))


REFERENCE_LOSSES = [
    DPOLoss(0.1),
    RobustLoss(0.1, 0.1),
    HingeLoss(0.1),
    IPOLoss(0.1),
    RPOLoss(0.1),
    BCOPairLoss(0.1),
    APOZeroLoss(0.1),
    APODownLoss(0.1),
    SPPOHardLoss(0.1),
    NCAPairLoss(0.1),
    EXOPairLoss(0.1),
]


@pytest.mark.parametrize(
    "loss", REFERENCE_LOSSES + [SimPOLoss(), ORPOLoss(), SFTLoss()], ids=lambda loss: type(loss).__name__
)
def test_large_margins_do_not_overflow(loss):
    big = pairs([-1.0, -1e4], [-1e4, -1.0], lc=[1.0, 1.0], lr=[1.0, 1.0])
    ref = pairs([-5e3, -5e3], [-5e3, -5e3], lc=[1.0, 1.0], lr=[1.0, 1.0])
    out = loss(big, ref)
    assert torch.isfinite(out.losses).all(), out.losses


def test_dpo_large_margins_by_hand():
    # h = +-1e4, beta 0.1: -log sigmoid(1000) ~ 0 and -log sigmoid(-1000) = 1000 (no inf, no nan)
    pol = pairs([0.0, -1e4], [-1e4, 0.0], lc=[1.0, 1.0], lr=[1.0, 1.0])
    ref = pairs([0.0, 0.0], [0.0, 0.0], lc=[1.0, 1.0], lr=[1.0, 1.0])
    assert_close(DPOLoss(0.1)(pol, ref).losses, torch.tensor([0.0, 1000.0], dtype=torch.float64), atol=1e-9, rtol=1e-12)


@pytest.mark.parametrize("loss", [DPOLoss(0.1), RobustLoss(0.1, 0.0), DPOLoss(0.5, label_smoothing=0.1)], ids=str)
def test_equal_log_ratios_give_ln2_and_zero_rewards(loss):
    # The policy equal to the reference (or chosen and rejected log-ratios equal): loss ln 2, rewards 0.
    out = loss(POLICY, POLICY)
    assert_close(out.losses, torch.full((2,), math.log(2), dtype=torch.float64))
    assert_close(out.chosen_rewards, torch.zeros(2, dtype=torch.float64))
    assert_close(out.rejected_rewards, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("loss", REFERENCE_LOSSES, ids=lambda loss: type(loss).__name__)
def test_reference_losses_refuse_to_run_without_a_reference(loss):
    with pytest.raises(ValueError, match="needs reference"):
        loss(POLICY, None)


def test_invalid_hyperparameters_are_named():
    with pytest.raises(ValueError, match="loss.beta"):
        DPOLoss(0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        DPOLoss(0.1, label_smoothing=0.5)
    with pytest.raises(ValueError, match="epsilon"):
        EXOPairLoss(0.1, epsilon=0.0)


def test_gradients_flow_through_every_loss():
    for loss in REFERENCE_LOSSES + [SimPOLoss(), ORPOLoss(), SFTLoss()]:
        c = torch.tensor([-3.0, -4.0], requires_grad=True)
        r = torch.tensor([-5.0, -2.0], requires_grad=True)
        pol = PairLogps(c, r, torch.tensor([2.0, 2.0]), torch.tensor([2.0, 2.0]))
        ref = PairLogps(torch.tensor([-4.0, -4.0]), torch.tensor([-4.0, -4.0]), pol.chosen_tokens, pol.rejected_tokens)
        loss(pol, ref).losses.mean().backward()
        assert c.grad is not None and torch.isfinite(c.grad).all(), type(loss).__name__
