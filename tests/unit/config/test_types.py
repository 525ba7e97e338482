"""config/types.py: every composed value against the type its constructor declares, before anything is built."""

from __future__ import annotations

import pytest

from conftest import compose, options
from dpo_lightning.config.types import check_types
from dpo_lightning.config.validation import TYPED_GROUPS
from dpo_lightning.core.errors import UsageError


def checked(*overrides: str) -> None:
    cfg = compose(*overrides)
    for group in TYPED_GROUPS:
        check_types(cfg.get(group), group)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.beta=abc", "loss.beta='abc': RPOLoss takes beta as a number"),  # the embedded model's loss
        ("loss.beta=true", "loss.beta=True: RPOLoss takes beta as a number"),
        ("optimizer.lr=fast", "optimizer.lr='fast': AdamW takes lr as a number"),
        ("trainer.max_steps=ten", "trainer.max_steps='ten': Trainer takes max_steps as an integer"),
        ("data.batch_size=2.5", "data.batch_size=2.5: preference_data takes batch_size as an integer"),
        ("peft=lora", None),
        ("model.dtype=3", "model.dtype=3: load_causal_lm takes dtype as a string"),
        ("callbacks.sample_generations.num_prompts=x", "SampleGenerations takes num_prompts as an integer"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_the_type_its_constructor_declares(override, message):
    if message is None:
        checked(override)
        return
    with pytest.raises(UsageError) as error:
        checked(override)
    assert message in str(error.value)


def test_a_peft_value_is_checked_against_the_adapter_factory():
    with pytest.raises(UsageError, match=r"peft.r='x': wrap_lora takes r as an integer"):
        checked("peft=lora", "peft.r=x")


@pytest.mark.parametrize("group", ["loss", "data", "model", "module", "optimizer", "scheduler", "trainer", "peft"])
def test_every_option_of_every_group_passes_as_shipped(group):
    extra = {"data": ["data.path=pairs.jsonl"], "loss": []}
    for option in options(group):
        if group == "data" and option in ("mixture",):
            checked(f"{group}={option}")
            continue
        overrides = [f"{group}={option}"]
        if group == "loss" and option in ("kto",):
            overrides.append("data=unpaired_from_pairs")
        checked(
            *overrides, *(extra.get(group, []) if option in ("jsonl", "preference", "unpaired", "problems") else [])
        )
