"""The packed layout (prompt once, several pairs per row, 4D mask) computes exactly what the textbook layout does:
per-pair log-probs, token KL, the DPO loss and every gradient, on a tiny Llama with SDPA and eager attention."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from conftest import tiny_llama
from dpo_lightning.core.logprobs import plain_sequence_logps, response_states, sequence_logps, token_kl
from dpo_lightning.data import PackedPairCollator, PairCollator, TokenizedPair
from dpo_lightning.models import wrap_lora


def pairs(vocab=97):
    g = torch.Generator().manual_seed(1)
    ids = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()  # noqa: E731
    # lengths 5+4+7=16, 9+2+3=14, 3+6+1=10, 2+1+2=5: the last two share a row when packed (width 16)
    return [
        TokenizedPair(ids(5), ids(4), ids(7)),
        TokenizedPair(ids(9), ids(2), ids(3)),
        TokenizedPair(ids(3), ids(6), ids(1)),
        TokenizedPair(ids(2), ids(1), ids(2)),
    ]


def test_packing_puts_short_pairs_in_one_row_and_restarts_positions():
    b = PackedPairCollator(pad_token_id=0)(pairs())
    assert b.input_ids.shape == (3, 16)
    assert b.segment_ids[2].tolist() == [2] * 10 + [3] * 5 + [-1]
    # pair 2: prompt 0..2, chosen 3..8, rejected continues from the prompt end: 3
    assert b.position_ids[2, :10].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 3]
    assert b.targets.numel() == 4 + 7 + 2 + 3 + 6 + 1 + 1 + 2
    assert PackedPairCollator(pad_token_id=0, pack=False)(pairs()).input_ids.shape == (4, 16)


def test_mask_blocks_other_pairs_and_chosen_from_rejected():
    b = PackedPairCollator(pad_token_id=0)(
        [TokenizedPair([5, 6], [7], [8, 9]), TokenizedPair([4], [3], [2]), TokenizedPair([1, 2, 3], [4, 5, 6], [7, 8])]
    )
    assert b.segment_ids.tolist() == [[2] * 8, [0] * 5 + [1] * 3]  # the longest pair first, then first fit
    m = b.attention_mask()[1, 0].int()
    # row 1: p p c r r | p c r ; rows are queries, columns keys
    assert m.tolist() == [
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 0, 1, 0, 0, 0, 0],
        [1, 1, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 1, 0, 1],
    ]
    additive = b.attention_mask("eager", torch.float32)[1, 0]
    assert (additive == 0).int().tolist() == m.tolist()


# Llama's RMSNorm computes in fp32 even in a float64 model, and the two layouts add up attention over different
# numbers of (masked) keys, so they agree to fp32 precision, not float64: a wrong mask would differ by O(1).
TOL = {"rtol": 1e-5, "atol": 1e-7}


def _model(attn: str, seed=0):
    model = tiny_llama(seed)
    model.config._attn_implementation = attn
    return model


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("pack", [True, False])
def test_packed_logps_and_gradients_equal_the_textbook_layout(attn, fused, pack):
    plain_model, packed_model = _model(attn), _model(attn)
    weights = torch.arange(1, 9, dtype=torch.float64)  # weight every row so every gradient path counts
    expected = plain_sequence_logps(plain_model, PairCollator(pad_token_id=0)(pairs()))
    (expected.logps * weights).sum().backward()

    states = response_states(packed_model, PackedPairCollator(pad_token_id=0, pack=pack)(pairs()), fused_head=fused)
    assert (states.head is not None) == fused
    got = sequence_logps(states, chunk_size=3)
    (got.logps * weights).sum().backward()

    assert_close(got.logps, expected.logps, **TOL)
    assert got.tokens.tolist() == [4, 2, 6, 1, 7, 3, 1, 2]
    for (name, p), q in zip(plain_model.named_parameters(), packed_model.parameters()):
        assert_close(q.grad, p.grad, msg=name, **TOL)


def test_packed_token_kl_and_lora_reference_equal_the_textbook_layout():
    policy, reference = tiny_llama(0), tiny_llama(1)
    plain, packed = PairCollator(pad_token_id=0)(pairs()), PackedPairCollator(pad_token_id=0)(pairs())
    kl_plain = token_kl(response_states(policy, plain), response_states(reference, plain), chunk_size=5)
    kl_packed = token_kl(response_states(policy, packed), response_states(reference, packed), chunk_size=5)
    # same positions in a different order: compare per response (rows) sums
    rows_plain, rows_packed = response_states(policy, plain).rows, response_states(policy, packed).rows
    per_row = lambda kl, rows: torch.zeros(8, dtype=kl.dtype).index_add(0, rows, kl)  # noqa: E731
    assert_close(per_row(kl_packed, rows_packed), per_row(kl_plain, rows_plain), **TOL)

    lora = wrap_lora(copy.deepcopy(policy), r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_()  # a non-zero adapter, so adapter on and off differ
    on = sequence_logps(response_states(lora, packed)).logps
    with lora.disable_adapter():
        off = sequence_logps(response_states(lora, packed)).logps
    assert_close(off, plain_sequence_logps(policy, plain).logps, **TOL)
    assert not torch.allclose(on, off)


def test_empty_prompt_scores_like_the_textbook_layout():
    p = [TokenizedPair([], [5, 6, 7], [8, 9]), TokenizedPair([3], [4], [5, 6])]
    expected = plain_sequence_logps(tiny_llama(), PairCollator(pad_token_id=0)(p))
    got = sequence_logps(response_states(tiny_llama(), PackedPairCollator(pad_token_id=0)(p)))
    assert_close(got.logps, expected.logps, **TOL)
    assert_close(got.tokens, expected.tokens.to(got.tokens.dtype))


def test_packed_layout_under_activation_checkpointing_gives_the_same_gradients():
    plain_model, checkpointed = _model("sdpa"), _model("sdpa")
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    checkpointed.train()
    batch = PackedPairCollator(pad_token_id=0)(pairs())
    for model in (plain_model, checkpointed):
        (sequence_logps(response_states(model, batch)).logps * torch.arange(1, 9)).sum().backward()
    for (name, p), q in zip(plain_model.named_parameters(), checkpointed.parameters()):
        assert_close(q.grad, p.grad, msg=name, **TOL)


def test_flex_attention_is_refused_on_a_cpu_with_the_reason():
    model = _model("flex_attention")
    with pytest.raises(ValueError, match="flex_attention needs a CUDA GPU"):
        response_states(model, PackedPairCollator(pad_token_id=0)(pairs()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention trains only on a CUDA GPU (no CPU backward)")
def test_flex_attention_block_mask_equals_the_dense_mask_and_the_textbook_layout():
    """On the GPU: the BlockMask path gives the textbook layout's log-probs and gradients (fp32; FlexAttention needs
    head_dim >= 16), and the BlockMask's dense form is the packed layout's boolean mask."""

    def model(attn):
        return tiny_llama(hidden=64, attn=attn, dtype="float32").cuda()

    plain_model, flex_model = model("sdpa"), model("flex_attention")
    weights = torch.arange(1, 9, dtype=torch.float32, device="cuda")
    expected = plain_sequence_logps(plain_model, PairCollator(pad_token_id=0)(pairs()).to("cuda"))
    (expected.logps * weights).sum().backward()
    batch = PackedPairCollator(pad_token_id=0)(pairs()).to("cuda")
    got = sequence_logps(response_states(flex_model, batch), chunk_size=3)
    (got.logps * weights).sum().backward()
    assert_close(got.logps, expected.logps, rtol=1e-4, atol=1e-4)
    for (name, p), q in zip(plain_model.named_parameters(), flex_model.parameters()):
        assert_close(q.grad, p.grad, msg=name, rtol=1e-3, atol=1e-5)
    block = batch.attention_mask("flex_attention")
    rows, width = batch.segment_ids.shape
    dense = block.to_dense()  # [R, 1, blocks, blocks]: which 128x128 blocks are computed at all
    assert dense.shape[0] == rows and block.shape[-1] == width
    allowed = batch.attention_mask("sdpa")
    q, kv = torch.meshgrid(torch.arange(width, device="cuda"), torch.arange(width, device="cuda"), indexing="ij")
    by_mod = torch.stack([block.mask_mod(torch.tensor(r, device="cuda"), 0, q, kv) for r in range(rows)])[:, None]
    assert torch.equal(by_mod, allowed)
