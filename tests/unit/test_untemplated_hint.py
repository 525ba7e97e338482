"""Broken sample answers on plain-text prompts fed without the chat template (the first hour's `""` answers): the
training's warning says what to change; with the template, or a tokenizer without one, it adds nothing."""

from __future__ import annotations

from types import SimpleNamespace

from dpo_lightning.lightning.callbacks.generations import untemplated_hint


def data(chat_template, tokenizer_template="{{ messages }}", names=("data",)):
    tokenizer = SimpleNamespace(chat_template=tokenizer_template)
    sources = [SimpleNamespace(name=n, chat_template=chat_template) for n in names]
    return SimpleNamespace(tokenizer=tokenizer, sources=sources)


def test_plain_prompts_without_the_template_get_the_setting_to_change():
    hint = untemplated_hint(data(False))
    assert hint.startswith(" The prompts reach this chat model without its chat template (data.chat_template=false)")
    assert "data.chat_template=auto wraps" in hint
    assert " of hh, shp " in untemplated_hint(data(False, names=("hh", "shp")))


def test_no_hint_with_the_template_or_without_one_to_use():
    assert untemplated_hint(data(True)) == ""
    assert untemplated_hint(data(False, tokenizer_template=None)) == ""  # a base model's tokenizer: nothing to wrap
    assert untemplated_hint(SimpleNamespace()) == ""
