"""TR-DPO's moving reference: the update by hand, alpha = 0 is plain DPO and alpha = 1 a hard copy, the step it
happens at, its weights in checkpoints, and the settings it cannot hold refused with the key named."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from conftest import compose
from dpo_lightning import DPOModule
from dpo_lightning.config.validation import ConfigError, validate_config
from dpo_lightning.core.losses import DPOLoss, SimPOLoss
from dpo_lightning.core.reference import SyncedCopy, build_reference
from dpo_lightning.models import build_tiny_llama, wrap_lora


def moved(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """A copy with every weight moved (as the policy is after some steps)."""
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)
    return other


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_a_sync_is_alpha_policy_plus_one_minus_alpha_reference(alpha):
    start = build_tiny_llama().model
    reference = SyncedCopy(copy.deepcopy(start), every=3, alpha=alpha)
    policy = moved(start)
    before = {k: v.clone() for k, v in reference.model.state_dict().items()}
    assert not reference.after_optimizer_step(policy, 2)  # not a multiple of 3: unchanged
    assert all(torch.equal(before[k], v) for k, v in reference.model.state_dict().items())
    assert reference.after_optimizer_step(policy, 3)
    wanted = policy.state_dict()
    for name, value in reference.model.state_dict().items():
        assert_close(value, alpha * wanted[name] + (1 - alpha) * before[name], rtol=0, atol=1e-6, msg=name)
    if alpha == 1.0:  # a hard copy: the policy's weights exactly
        assert all(torch.equal(v, wanted[k]) for k, v in reference.model.state_dict().items())
    if alpha == 0.0:  # plain DPO: the reference never moves
        assert all(torch.equal(v, before[k]) for k, v in reference.model.state_dict().items())
    assert not any(p.requires_grad for p in reference.parameters()) and not reference.model.training


def test_the_module_syncs_after_the_optimizer_step_and_checkpoints_the_reference():
    loaded = build_tiny_llama()
    module = DPOModule(loaded.model, DPOLoss(0.1), optimizer=torch.optim.AdamW, ref_sync_steps=2, ref_sync_alpha=1.0)
    assert isinstance(module.reference, SyncedCopy) and module.reference.moves
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    keys = [k for k in checkpoint["state_dict"] if k.startswith("reference.")]
    assert keys and len(keys) == len(list(module.policy.state_dict()))
    # a fixed reference stays out of checkpoints
    fixed = DPOModule(loaded.model, DPOLoss(0.1), optimizer=torch.optim.AdamW)
    checkpoint = {"state_dict": fixed.state_dict()}
    fixed.on_save_checkpoint(checkpoint)
    assert not any(k.startswith("reference.") for k in checkpoint["state_dict"])


def test_settings_a_moving_reference_cannot_hold_are_refused():
    loaded = build_tiny_llama()
    with pytest.raises(ValueError, match="precompute_ref"):
        build_reference(loaded.model, DPOLoss(), precompute=True, sync_steps=4)
    with pytest.raises(ValueError, match="LoRA"):
        build_reference(wrap_lora(loaded.model, r=2, alpha=4, dropout=0.0), DPOLoss(), sync_steps=4)
    with pytest.raises(ValueError, match="uses no reference"):
        build_reference(loaded.model, SimPOLoss(), sync_steps=4)
    with pytest.raises(ValueError, match="ref_sync_steps must be an integer >= 1"):
        build_reference(loaded.model, DPOLoss(), sync_steps=0)
    with pytest.raises(ValueError, match=r"ref_sync_alpha must be in \[0, 1\]"):
        build_reference(loaded.model, DPOLoss(), sync_steps=4, sync_alpha=1.5)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (("module.precompute_ref=true",), "precompute_ref"),
        (("peft=lora",), "LoRA"),
        (("loss=simpo",), "uses no reference"),
    ],
)
def test_the_fail_fast_check_refuses_them_before_a_model_loads(overrides, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(compose("model=tiny", "module=tr_dpo", *overrides))
    assert validate_config(compose("model=tiny", "module=tr_dpo")) is not None
