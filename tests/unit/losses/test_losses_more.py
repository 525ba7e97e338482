"""The losses TRL recipes reach for beyond the first fourteen, each against its paper's formula computed by hand in
plain `math` (float64, tight tolerances), with the edge cases the papers name."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hydra.utils import instantiate
from test_losses import (
    LEN_C,
    LEN_R,
    PI_C,
    PI_R,
    POLICY,
    REF_C,
    REF_R,
    REFERENCE,
    check,
    h,
    logsig,
    pairs,
    per_pair,
    r_l,
    r_w,
    sig,
)
from torch.testing import assert_close

from conftest import compose
from dpo_lightning.core.losses import (
    AOTLoss,
    AOTUnpairedLoss,
    BCOPairLoss,
    DiscoPOPLoss,
    DPOLoss,
    FDivergenceLoss,
    IPOLoss,
    LengthDesensitizedLoss,
    MixtureLoss,
    RPOLoss,
    SFTLoss,
    SigmoidNormLoss,
    WeightedPairLoss,
)

T = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


def test_sigmoid_norm_uses_per_token_log_ratios():
    beta = 1.0
    out = check(
        SigmoidNormLoss(beta),
        per_pair(lambda i: -logsig(beta * (r_w(i) / LEN_C[i] - r_l(i) / LEN_R[i]))),
    )
    assert_close(out.chosen_rewards, per_pair(lambda i: beta * r_w(i) / LEN_C[i]))


def test_discopop_by_hand():
    beta, tau = 0.05, 0.05

    def expected(i):
        rho = beta * h(i)
        return (1 - sig(rho / tau)) * -logsig(rho) + sig(rho / tau) * math.exp(-rho)

    check(DiscoPOPLoss(beta, tau), per_pair(expected))
    # far below zero it is the logistic loss, far above the exponential one
    low, high = pairs([-100.0, 0.0], [0.0, -100.0]), pairs([0.0, 0.0], [0.0, 0.0])
    out = DiscoPOPLoss(0.05, 0.05)(low, high).losses
    assert out[0].item() == pytest.approx(-logsig(-5.0), rel=1e-6) and out[1].item() == pytest.approx(math.exp(-5.0))


def test_aot_paired_compares_sorted_gaps():
    # three pairs whose policy and reference gaps sort differently: d = [4, -5, 1], d_ref = [1, -2, 3]
    policy = pairs([-10.0, -20.0, -3.0], [-14.0, -15.0, -4.0], lc=[1.0] * 3, lr=[1.0] * 3)
    reference = pairs([-12.0, -18.0, -1.0], [-13.0, -16.0, -4.0], lc=[1.0] * 3, lr=[1.0] * 3)
    beta = 0.1
    d, d_ref = sorted([4.0, -5.0, 1.0]), sorted([1.0, -2.0, 3.0])
    got = AOTLoss(beta)(policy, reference).losses
    assert_close(got, T([-logsig(beta * (a - b)) for a, b in zip(d, d_ref)]), rtol=1e-12, atol=1e-12)

    # a batch of one pair is DPO
    def one(p):
        return replace(
            p,
            chosen=p.chosen[:1],
            rejected=p.rejected[:1],
            chosen_tokens=p.chosen_tokens[:1],
            rejected_tokens=p.rejected_tokens[:1],
        )

    assert_close(AOTLoss(beta)(one(policy), one(reference)).losses, DPOLoss(beta)(one(policy), one(reference)).losses)


def test_aot_unpaired_compares_sorted_log_ratios():
    beta = 0.1
    chosen, rejected = sorted(r_w(i) for i in range(2)), sorted(r_l(i) for i in range(2))  # [-2, 2] and [-1, 1]
    check(AOTUnpairedLoss(beta), T([-logsig(beta * (c - r)) for c, r in zip(chosen, rejected)]))


def f_prime(divergence: str, u: float, alpha: float = 0.5) -> float:
    return {
        "reverse_kl": math.log(u) + 1,
        "forward_kl": -1 / u,
        "js": math.log(2 * u / (1 + u)),
        "alpha": (1 - u ** (-alpha)) / alpha,
    }[divergence]


@pytest.mark.parametrize("divergence", ["reverse_kl", "forward_kl", "js", "alpha"])
def test_f_divergence_by_hand(divergence):
    beta = 0.1

    def expected(i):
        u_w, u_l = math.exp(r_w(i)), math.exp(r_l(i))
        return -logsig(beta * (f_prime(divergence, u_w) - f_prime(divergence, u_l)))

    check(FDivergenceLoss(beta, divergence), per_pair(expected))


def test_f_divergence_limits():
    # reverse KL is DPO; alpha -> 0 tends to reverse KL; alpha = 1 is forward KL (f' differ by a constant)
    assert_close(FDivergenceLoss(0.1).pair_losses(POLICY, REFERENCE), DPOLoss(0.1).pair_losses(POLICY, REFERENCE))
    near_zero = FDivergenceLoss(0.1, "alpha", alpha=1e-7).pair_losses(POLICY, REFERENCE)
    assert_close(near_zero, DPOLoss(0.1).pair_losses(POLICY, REFERENCE), rtol=1e-5, atol=1e-6)
    forward = FDivergenceLoss(0.1, "forward_kl").pair_losses(POLICY, REFERENCE)
    assert_close(FDivergenceLoss(0.1, "alpha", alpha=1.0).pair_losses(POLICY, REFERENCE), forward)
    # a log-ratio of -1000 (u = e^-1000) stays finite under forward KL and the alpha-divergence
    far = pairs([-1000.0, 0.0], [0.0, -1000.0])
    zero = pairs([0.0, 0.0], [0.0, 0.0])
    for loss in (FDivergenceLoss(0.1, "forward_kl"), FDivergenceLoss(0.1, "alpha", alpha=0.5)):
        assert torch.isfinite(loss(far, zero).losses).all()
    with pytest.raises(ValueError, match="loss.divergence"):
        FDivergenceLoss(0.1, "hellinger")
    with pytest.raises(ValueError, match=r"loss.alpha must be in \(0, 1\]"):
        FDivergenceLoss(0.1, "alpha", alpha=0.0)


def test_a_mixture_of_one_term_is_that_term():
    for term in (DPOLoss(0.1), IPOLoss(0.5), SFTLoss()):
        mix = MixtureLoss({"only": {"loss": term, "weight": 1.0}})
        got, want = mix(POLICY, REFERENCE), term(POLICY, REFERENCE)
        assert_close(got.losses, want.losses)
        assert_close(got.chosen_rewards, want.chosen_rewards)
        assert_close(got.extras["loss/only"], want.losses)
        assert mix.beta == term.beta


def test_mpo_is_its_weighted_terms_and_logs_each():
    beta = 0.1
    dpo = per_pair(lambda i: -logsig(beta * h(i)))
    delta = beta * (r_w(0) + r_w(1) + r_l(0) + r_l(1)) / 4  # BCO's running mean after the first batch
    bco = per_pair(lambda i: -logsig(beta * r_w(i) - delta) - logsig(-(beta * r_l(i) - delta)))
    sft = per_pair(lambda i: -PI_C[i] / LEN_C[i])
    mpo = instantiate(compose("loss=mpo").loss)
    out = check(mpo, 0.8 * dpo + 0.2 * bco + 1.0 * sft)
    assert_close(out.extras["loss/quality"], bco)
    assert_close(out.extras["loss/generation/weight"], T([1.0, 1.0]))
    assert_close(out.extras["loss/preference/weight"], T([0.8, 0.8]))
    assert mpo.terms["quality"].reward_mean.item() == pytest.approx(delta)  # the stateful term moved once
    assert_close(out.chosen_rewards, per_pair(lambda i: beta * r_w(i)))  # DPO's, the first reference term
    assert "loss/quality" in mpo.extra_metrics and "bco/delta" in mpo.extra_metrics


def test_rpo_is_the_dpo_sft_mixture():
    rpo, mix = instantiate(compose("loss=rpo").loss), instantiate(compose("loss=dpo_sft").loss)
    assert isinstance(rpo, RPOLoss) and isinstance(mix, MixtureLoss)
    assert_close(rpo(POLICY, REFERENCE).losses, mix(POLICY, REFERENCE).losses)
    rpo = instantiate(compose("loss=rpo", "loss.alpha=0.3").loss)
    mix = instantiate(compose("loss=dpo_sft", "loss.terms.sft.weight=0.3").loss)
    assert_close(rpo(POLICY, REFERENCE).losses, mix(POLICY, REFERENCE).losses)


def test_mixture_errors_name_the_term():
    with pytest.raises(ValueError, match="at least one term"):
        MixtureLoss({})
    with pytest.raises(ValueError, match=r"loss.terms.x.weight"):
        MixtureLoss({"x": {"loss": DPOLoss(), "weight": -1}})
    with pytest.raises(ValueError, match=r"loss.terms.x.loss"):
        MixtureLoss({"x": {"loss": "dpo", "weight": 1}})


SHARED_C, SHARED_R = [-6.0, -8.0], [-14.0, -9.0]  # sums over min(|y_w|, |y_l|) = 5 and 4 tokens


def with_shared(p, c, r):
    return replace(p, chosen_shared=T(c), rejected_shared=T(r))


def test_ld_dpo_damps_the_tokens_past_the_shared_length():
    beta, alpha = 0.1, 0.3
    policy = with_shared(POLICY, SHARED_C, SHARED_R)

    def expected(i):
        chosen = SHARED_C[i] + alpha * (PI_C[i] - SHARED_C[i]) - REF_C[i]  # the reference's plain sums (as TRL)
        rejected = SHARED_R[i] + alpha * (PI_R[i] - SHARED_R[i]) - REF_R[i]
        return -logsig(beta * (chosen - rejected))

    check(LengthDesensitizedLoss(DPOLoss(beta), alpha), per_pair(expected), policy=policy)
    # alpha = 1 is the wrapped loss, for any wrapped loss
    for inner in (DPOLoss(beta), IPOLoss(0.5), SigmoidNormLoss()):
        got = LengthDesensitizedLoss(inner, 1.0)(policy, REFERENCE)
        assert_close(got.losses, inner(POLICY, REFERENCE).losses)
    with pytest.raises(ValueError, match="shared-length"):
        LengthDesensitizedLoss(DPOLoss(), 0.5)(POLICY, REFERENCE)
    with pytest.raises(ValueError, match=r"loss.alpha must be in \[0, 1\]"):
        LengthDesensitizedLoss(DPOLoss(), 1.5)


def test_wpo_weighs_each_pair_by_the_policy_likelihood_of_the_pair():
    beta = 0.1
    aligned_c, aligned_r = [-0.2, -1.5], [-0.4, 1.9]  # pair 1's product exceeds 1: clamped
    policy = replace(POLICY, chosen_aligned=T(aligned_c), rejected_aligned=T(aligned_r))
    weights = [min(1.0, math.exp(aligned_c[i] + aligned_r[i])) for i in range(2)]
    out = check(WeightedPairLoss(DPOLoss(beta)), per_pair(lambda i: weights[i] * -logsig(beta * h(i))), policy=policy)
    assert weights[1] == 1.0 and weights[0] == pytest.approx(math.exp(-0.6))
    assert_close(out.extras["wpo_weight"], T(weights))
    assert_close(out.chosen_rewards, per_pair(lambda i: beta * r_w(i)))  # rewards unweighted
    # no gradient through the weights: d loss / d aligned is zero
    chosen, aligned = T(PI_C).requires_grad_(), T(aligned_c).requires_grad_()
    graded = replace(policy, chosen=chosen, chosen_aligned=aligned)
    WeightedPairLoss(DPOLoss(beta))(graded, REFERENCE).losses.sum().backward()
    assert aligned.grad is None and chosen.grad is not None
    with pytest.raises(ValueError, match="aligned log-probs"):
        WeightedPairLoss(DPOLoss())(POLICY, REFERENCE)


def test_wrappers_and_mixtures_pass_on_what_their_terms_need():
    ld = LengthDesensitizedLoss(SFTLoss(), 0.5)
    assert ld.needs_shared_prefix and not ld.needs_aligned and not ld.requires_reference
    both = MixtureLoss({"a": {"loss": ld}, "b": {"loss": WeightedPairLoss(BCOPairLoss())}})
    assert both.needs_shared_prefix and both.needs_aligned and both.requires_reference
    assert "wpo_weight" in both.extra_metrics and "bco/delta" in both.extra_metrics
