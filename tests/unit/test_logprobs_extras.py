"""The optional sums some losses read (LD-DPO's shared-length sums, WPO's aligned log-probs) equal the textbook
computation from full logits, in every layout (padded, halves joint or separate, packed) and on both head paths."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from conftest import tiny_llama
from dpo_lightning.core.logprobs import PairScorer, pair_logps, response_states
from dpo_lightning.data import PackedPairCollator, PairCollator, TokenizedPair

TOL = {"rtol": 1e-5, "atol": 1e-7}  # the layouts agree to fp32 (RMSNorm), as in test_packing.py


def pairs(vocab=97):
    g = torch.Generator().manual_seed(3)
    ids = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()  # noqa: E731
    return [  # (prompt, chosen, rejected): chosen longer, rejected longer, equal, one token
        TokenizedPair(ids(5), ids(6), ids(3)),
        TokenizedPair(ids(4), ids(2), ids(5)),
        TokenizedPair(ids(3), ids(4), ids(4)),
        TokenizedPair(ids(2), ids(1), ids(3)),
    ]


@torch.no_grad()
def textbook(model):
    """Per response: its tokens' log-probs and log sum_v p(v)^2, from the full logits of the padded batch."""
    batch = PairCollator(pad_token_id=0)(pairs())
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1].double()
    logp = logits.log_softmax(-1)
    token = logp.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    sum_sq = (2 * logp).logsumexp(-1)
    mask = batch.response_mask[:, 1:].bool()
    return [(token[i][mask[i]], sum_sq[i][mask[i]]) for i in range(mask.shape[0])]


def expected(model):
    rows = textbook(model)
    half = len(rows) // 2
    shared, aligned = [], []
    for i, (token, sum_sq) in enumerate(rows):
        other = rows[(i + half) % len(rows)][0]
        shared.append(token[: min(len(token), len(other))].sum())
        aligned.append((token - sum_sq).mean())
    return torch.stack(shared), torch.stack(aligned)


@pytest.mark.parametrize("layout", ["joint", "separate", "packed"])
@pytest.mark.parametrize("fused", [True, False])
def test_shared_prefix_sums_and_aligned_logps_match_the_textbook(layout, fused):
    model = tiny_llama(seed=2)
    if layout == "packed":
        batch = PackedPairCollator(pad_token_id=0, pack=True)(pairs())
    else:
        batch = PairCollator(pad_token_id=0)(pairs())
    states = response_states(model, batch, fused_head=fused, separate_halves=layout == "separate")
    got = pair_logps(states, chunk_size=3, vocab_chunk_size=10, shared_prefix=True, aligned=True)
    shared, aligned = expected(model)
    assert_close(torch.cat([got.chosen_shared, got.rejected_shared]).double(), shared, **TOL)
    assert_close(torch.cat([got.chosen_aligned, got.rejected_aligned]).double(), aligned, **TOL)
    # by construction: a response's shared sum is its whole sum when it is the shorter one of its pair
    shorter = got.chosen_tokens <= got.rejected_tokens
    assert_close(got.chosen_shared[shorter], got.chosen[shorter])
    assert not got.chosen_aligned.requires_grad


def test_the_scorer_computes_them_for_the_policy_only():
    model = tiny_llama(seed=2)
    states = response_states(model, PairCollator(pad_token_id=0)(pairs()))
    scorer = PairScorer(shared_prefix=True, aligned=True)
    policy, reference = scorer.pairs(states, policy=True), scorer.pairs(states)
    assert policy.chosen_shared is not None and policy.rejected_aligned is not None
    assert reference.chosen_shared is None and reference.chosen_aligned is None
    plain = PairScorer().pairs(states, policy=True)
    assert plain.chosen_shared is None and plain.chosen_aligned is None
    assert_close(policy.chosen, plain.chosen)
