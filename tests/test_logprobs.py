"""The fused, chunked log-prob path equals the textbook computation: log-probs, gradients, KL."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from dpo_lightning.data import PairCollator, TokenizedPair
from dpo_lightning.logprobs import (
    ChunkedTokenLogps, has_plain_head, plain_sequence_logps, response_states, sequence_logps, token_kl,
)
from dpo_lightning.models import wrap_lora


def tiny_llama(seed=0, vocab=97, tie=True):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    return LlamaForCausalLM(cfg).double()


def batch(vocab=97):
    g = torch.Generator().manual_seed(0)
    ids = lambda n: torch.randint(3, vocab, (n,), generator=g).tolist()  # noqa: E731
    pairs = [TokenizedPair(ids(5), ids(4), ids(7)), TokenizedPair(ids(9), ids(2), ids(3)), TokenizedPair(ids(3), ids(6), ids(1))]
    return PairCollator(pad_token_id=0)(pairs)


@pytest.mark.parametrize("separate", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 1024])
def test_fused_path_matches_plain_logps_and_gradients(separate, chunk):
    plain_model, fused_model = tiny_llama(), tiny_llama()
    b = batch()
    expected = plain_sequence_logps(plain_model, b)
    (expected.logps * torch.arange(1, 7)).sum().backward()  # weight the rows so every gradient path counts

    states = response_states(fused_model, b, fused_head=True, separate_halves=separate)
    assert states.head is not None  # the fused path really ran
    got = sequence_logps(states, chunk_size=chunk)
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


def test_untied_head_with_bias_gradients():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(11, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(11, dtype=torch.float64, generator=g, requires_grad=True)
    t = torch.randint(0, 11, (7,), generator=g)
    assert torch.autograd.gradcheck(lambda h, w, b: ChunkedTokenLogps.apply(h, w, b, t, 3).double(), (h, w, b))


def test_plain_path_is_taken_for_unknown_heads():
    model = tiny_llama()
    model.config.model_type = "some_softcapped_model"
    assert not has_plain_head(model)
    states = response_states(model, batch())
    assert states.head is None
    assert_close(sequence_logps(states).logps, plain_sequence_logps(model, batch()).logps)


def test_token_kl_matches_full_distribution_kl():
    policy, reference = tiny_llama(0), tiny_llama(1)
    b = batch()
    kl = token_kl(response_states(policy, b), response_states(reference, b), chunk_size=2)
    mask = b["response_mask"][:, 1:]
    logp = policy(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1][mask].log_softmax(-1)
    logq = reference(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits[:, :-1][mask].log_softmax(-1)
    expected = torch.nn.functional.kl_div(logq, logp, log_target=True, reduction="none").sum(-1)
    assert_close(kl, expected.float() if kl.dtype == torch.float32 else expected)
    assert (kl > 0).all()
    assert_close(token_kl(response_states(policy, b), response_states(copy.deepcopy(policy), b)), torch.zeros_like(kl), atol=1e-9, rtol=0)


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
