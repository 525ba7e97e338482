"""Tokenization: the prompt is masked out of the loss, responses end in EOS, and lengths are enforced."""

from __future__ import annotations

import pytest

from dpo_lightning.data import PairCollator, PairTokenizer, PreferencePair


def test_text_pair_prompt_masked_and_eos_appended(tokenizer):
    tok = PairTokenizer(tokenizer, max_length=64, max_prompt_length=32)
    t = tok(PreferencePair("Question: 2+2?\nAnswer:", " 4", " 5"))
    assert t.chosen[-1] == tokenizer.eos_token_id and t.rejected[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(t.chosen[:-1]) == " 4"
    batch = PairCollator(pad_token_id=tokenizer.pad_token_id)([t])
    ids, mask = batch.input_ids, batch.response_mask
    assert ids[0, mask[0]].tolist() == t.chosen and ids[1, mask[1]].tolist() == t.rejected
    assert not mask[:, : len(t.prompt)].any()  # no prompt token counts
    assert batch.attention_mask.sum().item() == 2 * len(t.prompt) + len(t.chosen) + len(t.rejected)


def test_chat_template_renders_user_and_assistant_turns(tokenizer):
    tok = PairTokenizer(tokenizer, chat_template=True)
    t = tok(PreferencePair("Hi there", "Hello! How can I help?", "Go away."))
    prompt = tokenizer.decode(t.prompt)
    assert prompt.endswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.decode(t.chosen) == "Hello! How can I help?<|im_end|>"  # ends at EOS, nothing after
    assert t.chosen.count(tokenizer.eos_token_id) == 1
    messages = PreferencePair(
        [{"role": "user", "content": "Hi there"}],
        [{"role": "assistant", "content": "Hello! How can I help?"}],
        [{"role": "assistant", "content": "Go away."}],
    )
    assert PairTokenizer(tokenizer)(messages) == t  # chat messages and wrapped text render identically


def test_truncation_modes(tokenizer):
    long_prompt = " ".join(f"w{i}" for i in range(200))
    pair = PreferencePair(long_prompt, " short answer", " a much longer answer " * 20)
    keep_end = PairTokenizer(tokenizer, max_length=48, max_prompt_length=16)(pair)
    full = PairTokenizer(tokenizer, max_length=4096, max_prompt_length=4000)(pair)
    assert keep_end.truncated and len(keep_end.prompt) == 16 and keep_end.prompt == full.prompt[-16:]
    assert len(keep_end.prompt) + max(len(keep_end.chosen), len(keep_end.rejected)) == 48
    keep_start = PairTokenizer(tokenizer, max_length=48, max_prompt_length=16, truncation_mode="keep_start")(pair)
    assert keep_start.prompt == full.prompt[:16]
    assert PairTokenizer(tokenizer, max_length=48, max_prompt_length=16, truncation_mode="drop")(pair) is None
    assert not full.truncated


def test_length_settings_are_validated(tokenizer):
    with pytest.raises(ValueError, match="max_prompt_length"):
        PairTokenizer(tokenizer, max_length=64, max_prompt_length=64)
    with pytest.raises(ValueError, match="truncation_mode"):
        PairTokenizer(tokenizer, truncation_mode="middle")
