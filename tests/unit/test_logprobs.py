"""The fused, chunked log-prob path equals the textbook computation: log-probs, gradients, KL."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from conftest import tiny_llama
from dpo_lightning.core.lm_head import ChunkedTokenLogps
from dpo_lightning.core.logprobs import (
    has_plain_head,
    plain_sequence_logps,
    response_states,
    sequence_logps,
    token_kl,
)
from dpo_lightning.data import PairCollator, TokenizedPair
from dpo_lightning.models import wrap_lora


def batch(vocab=97):
    g = torch.Generator().manual_seed(0)
    ids = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()  # noqa: E731
    pairs = [
        TokenizedPair(ids(5), ids(4), ids(7)),
        TokenizedPair(ids(9), ids(2), ids(3)),
        TokenizedPair(ids(3), ids(6), ids(1)),
    ]
    return PairCollator(pad_token_id=0)(pairs)


@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("chunk, vocab_chunk", [(1, 10), (4, 97), (5, 7), (4096, 8192)])
def test_fused_path_matches_plain_logps_and_gradients(separate, chunk, vocab_chunk):
    plain_model, fused_model = tiny_llama(), tiny_llama()
    b = batch()
    expected = plain_sequence_logps(plain_model, b)
    (expected.logps * torch.arange(1, 7)).sum().backward()  # weight the rows so every gradient path counts

    states = response_states(fused_model, b, fused_head=True, separate_halves=separate)
    assert states.head is not None and states.logits is None  # the fused path really ran
    got = sequence_logps(states, chunk_size=chunk, vocab_chunk_size=vocab_chunk)
    (got.logps * torch.arange(1, 7)).sum().backward()

    assert_close(got.logps, expected.logps)
    assert_close(got.tokens, expected.tokens.to(got.tokens.dtype))
    for (name, p), q in zip(plain_model.named_parameters(), fused_model.parameters()):
        assert_close(q.grad, p.grad, msg=name)


def test_token_counts_are_the_response_lengths():
    b = batch()
    got = sequence_logps(response_states(tiny_llama(), b))
    # chosen rows then rejected rows, in pair order (responses 4, 2, 6 and 7, 3, 1 tokens)
    assert got.tokens.tolist() == [4, 2, 6, 7, 3, 1]


@pytest.mark.parametrize("chunk, vocab_chunk", [(3, 4), (3, 100), (100, 4), (100, 100)])
def test_untied_head_with_bias_gradients(chunk, vocab_chunk):
    g = torch.Generator().manual_seed(1)
    h = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randint(0, 11, (7,), generator=g)
    fn = lambda h, w, b: ChunkedTokenLogps.apply(h, w, b, t, chunk, vocab_chunk)  # noqa: E731
    assert_close(fn(h, w, b), torch.log_softmax(h @ w.t() + b, -1).gather(-1, t[:, None]).squeeze(-1))
    assert torch.autograd.gradcheck(fn, (h, w, b))


def test_bf16_head_gradients_match_autograd_in_the_weight_dtype():
    """In bf16 the tiled head computes what autograd computes for bf16 logits upcast to fp32 (to bf16 rounding),
    and its gradients come back in bf16."""
    g = torch.Generator().manual_seed(2)
    h = torch.randn(40, 32, generator=g).bfloat16().requires_grad_()
    w = (torch.randn(300, 32, generator=g) * 0.2).bfloat16().requires_grad_()
    t = torch.randint(0, 300, (40,), generator=g)
    weights = torch.rand(40, generator=g)
    expected = torch.log_softmax((h @ w.t()).float(), -1).gather(-1, t[:, None]).squeeze(-1)
    expected_grads = torch.autograd.grad((expected * weights).sum(), (h, w))
    for chunk, vocab_chunk in [(64, 64), (16, 1000)]:
        got = ChunkedTokenLogps.apply(h, w, None, t, chunk, vocab_chunk)
        grads = torch.autograd.grad((got * weights).sum(), (h, w))
        assert got.dtype == torch.float32 and [x.dtype for x in grads] == [torch.bfloat16] * 2
        assert_close(got, expected)
        for x, y in zip(grads, expected_grads):
            assert_close(x.float(), y.float(), rtol=2e-2, atol=2e-3)


def test_head_temporaries_are_one_tile():
    """No op in the head's forward or backward outputs more than one tile of floats, apart from the gradients
    themselves (so no [tokens, vocab] logits and no [vocab, hidden] fp32 buffer)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    class LargestOutputs(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.sizes = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = {
                x.untyped_storage().data_ptr() for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor)
            }
            for x in tree_leaves(out):  # newly allocated outputs only (not views or in-place results)
                if (
                    isinstance(x, torch.Tensor)
                    and x.is_floating_point()
                    and x.untyped_storage().data_ptr() not in inputs
                ):
                    self.sizes.append((x.numel(), x.dtype, func.__name__))
            return out

    rows, hidden, vocab, chunk, vocab_chunk = 50, 8, 1000, 20, 100
    h = torch.randn(rows, hidden, requires_grad=True)
    w = torch.randn(vocab, hidden, requires_grad=True)
    t = torch.randint(0, vocab, (rows,))
    with LargestOutputs() as mode:
        ChunkedTokenLogps.apply(h, w, None, t, chunk, vocab_chunk).sum().backward()
    big = [s for s in mode.sizes if s[0] > chunk * vocab_chunk]
    # the only large outputs: the weight gradient itself (its own dtype, allocated once), and nothing else
    assert [(n, dtype) for n, dtype, _ in big] == [(vocab * hidden, torch.float32)], big
    assert_close(w.grad, torch.autograd.grad(torch.log_softmax(h @ w.t(), -1).gather(-1, t[:, None]).sum(), w)[0])


def test_plain_path_is_taken_for_unknown_heads(caplog):
    model = tiny_llama()
    model.config.model_type = "some_softcapped_model"
    assert not has_plain_head(model)
    with caplog.at_level("WARNING", logger="dpo_lightning.core.logprobs"):
        states = response_states(model, batch())
    assert "'some_softcapped_model' is not known to compute its logits as a plain linear head" in caplog.text
    assert states.head is None and states.logits is not None
    assert_close(sequence_logps(states).logps, plain_sequence_logps(model, batch()).logps)


def test_token_kl_matches_full_distribution_kl():
    policy, reference = tiny_llama(0), tiny_llama(1)
    b = batch()
    kl = token_kl(response_states(policy, b), response_states(reference, b), chunk_size=2)
    mask = b.response_mask[:, 1:]
    logp = policy(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, :-1][mask].log_softmax(-1)
    logq = reference(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[:, :-1][mask].log_softmax(-1)
    expected = torch.nn.functional.kl_div(logq, logp, log_target=True, reduction="none").sum(-1)
    assert_close(kl, expected.float() if kl.dtype == torch.float32 else expected)
    assert (kl > 0).all()
    assert_close(
        token_kl(response_states(policy, b), response_states(copy.deepcopy(policy), b)),
        torch.zeros_like(kl),
        atol=1e-9,
        rtol=0,
    )


def test_lora_policy_uses_the_fused_path_and_disabling_the_adapter_gives_the_base():
    base = tiny_llama().float()
    expected = plain_sequence_logps(base, batch()).logps
    policy = wrap_lora(copy.deepcopy(base), r=2, alpha=4, dropout=0.0)
    for name, p in policy.named_parameters():  # make the adapter non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(p)
    assert has_plain_head(policy)
    with policy.disable_adapter():
        assert_close(sequence_logps(response_states(policy, batch())).logps, expected, rtol=1e-5, atol=1e-5)
    adapted = sequence_logps(response_states(policy, batch())).logps
    assert not torch.allclose(adapted, expected)
