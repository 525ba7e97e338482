"""DPOModule: the first step with the policy equal to the reference, the LoRA reference, checkpoints."""

from __future__ import annotations

import copy
import math

import torch
from torch.testing import assert_close

from dpo_lightning import DPOModule
from dpo_lightning.data import PairCollator, PairTokenizer, PreferencePair
from dpo_lightning.losses import DPOLoss, SimPOLoss
from dpo_lightning.models import build_tiny_llama, wrap_lora


def make_batch(tokenizer):
    tok = PairTokenizer(tokenizer, max_length=64, max_prompt_length=32, chat_template=True)
    pairs = [PreferencePair("Is it safe to mix bleach and ammonia?", "No, it releases toxic chloramine gas.", "Sure, it cleans better."),
             PreferencePair("Tell me I'm always right.", "I'll tell you when I think you are.", "You are always right.")]
    return PairCollator(tokenizer.pad_token_id)([tok(p) for p in pairs])


def test_first_step_loss_is_ln2_with_zero_rewards():
    loaded = build_tiny_llama()
    module = DPOModule(loaded.model, DPOLoss(0.1), optimizer=torch.optim.AdamW,
                       reference=copy.deepcopy(loaded.model))
    out, policy, kl = module(make_batch(loaded.tokenizer))
    assert_close(out.losses, torch.full((2,), math.log(2)))
    assert_close(out.chosen_rewards, torch.zeros(2), atol=1e-6, rtol=0)
    assert_close(out.rejected_rewards, torch.zeros(2), atol=1e-6, rtol=0)
    assert_close(kl, torch.zeros_like(kl), atol=1e-6, rtol=0)
    assert (policy.chosen < 0).all()


def test_lora_reference_is_the_base_with_the_adapter_disabled():
    loaded = build_tiny_llama()
    policy = wrap_lora(loaded.model, r=2, alpha=4, dropout=0.0)
    module = DPOModule(policy, DPOLoss(0.1), optimizer=torch.optim.AdamW)
    assert module.adapter_reference and module.reference is None  # no second copy of the weights
    out, _, _ = module(make_batch(loaded.tokenizer))
    assert_close(out.losses, torch.full((2,), math.log(2)))  # LoRA B starts at zero: policy == base
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_reference_stays_frozen_in_eval_mode_and_out_of_checkpoints():
    loaded = build_tiny_llama()
    module = DPOModule(loaded.model, DPOLoss(0.1), optimizer=torch.optim.AdamW, reference=copy.deepcopy(loaded.model))
    module.train()
    assert not module.reference.training and module.policy.training
    assert not any(p.requires_grad for p in module.reference.parameters())
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(k.startswith("reference.") for k in checkpoint["state_dict"])


def test_reference_free_loss_needs_no_reference():
    loaded = build_tiny_llama()
    module = DPOModule(loaded.model, SimPOLoss(), optimizer=torch.optim.AdamW, compute_kl=True)
    out, _, kl = module(make_batch(loaded.tokenizer))
    assert kl is None and torch.isfinite(out.losses).all()
