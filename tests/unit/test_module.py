"""DPOModule: the first step with the policy equal to the reference, each kind of reference, checkpoints."""

from __future__ import annotations

import copy
import math

import torch
from torch.testing import assert_close

from dpo_lightning import DPOModule
from dpo_lightning.core.losses import DPOLoss, SimPOLoss
from dpo_lightning.core.refcache import ReferenceLogps
from dpo_lightning.core.reference import AdapterDisabled, FrozenCopy, NoReference, Precomputed, build_reference
from dpo_lightning.data import PairCollator, PairTokenizer, PreferencePair
from dpo_lightning.lightning.precompute import precompute_reference
from dpo_lightning.models import build_tiny_llama, wrap_lora


def make_batch(tokenizer):
    tok = PairTokenizer(tokenizer, max_length=64, max_prompt_length=32, chat_template=True)
    pairs = [
        PreferencePair(
            "Is it safe to mix bleach and ammonia?", "No, it releases toxic chloramine gas.", "Sure, it cleans better."
        ),
        PreferencePair("Tell me I'm always right.", "I'll tell you when I think you are.", "You are always right."),
    ]
    return PairCollator(tokenizer.pad_token_id)([tok(p) for p in pairs])


def test_first_step_loss_is_ln2_with_zero_rewards():
    loaded = build_tiny_llama()
    module = DPOModule(loaded.model, DPOLoss(0.1), optimizer=torch.optim.AdamW, reference=copy.deepcopy(loaded.model))
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
    assert isinstance(module.reference, AdapterDisabled)
    assert not list(module.reference.parameters()) and module.reference.frozen_model() is None  # no second copy
    out, _, _ = module(make_batch(loaded.tokenizer))
    assert_close(out.losses, torch.full((2,), math.log(2)))  # LoRA B starts at zero: policy == base
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_a_lora_checkpoint_holds_the_adapter_not_the_frozen_base_and_loads_back():
    loaded = build_tiny_llama()
    policy = wrap_lora(loaded.model, r=2, alpha=4, dropout=0.0)
    module = DPOModule(policy, DPOLoss(0.1), optimizer=torch.optim.AdamW)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)  # a trained adapter
    state = module.state_dict()
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert set(state) == trainable  # the base is rebuilt from the config at a resume: 0 of its weights saved
    fresh = DPOModule(wrap_lora(build_tiny_llama().model, r=2, alpha=4, dropout=0.0), DPOLoss(0.1), torch.optim.AdamW)
    fresh.load_state_dict(state, strict=fresh.strict_loading)
    batch = make_batch(loaded.tokenizer)
    assert_close(fresh(batch)[1].chosen, module(batch)[1].chosen)


def test_reference_stays_frozen_in_eval_mode_and_out_of_checkpoints():
    loaded = build_tiny_llama()
    module = DPOModule(loaded.model, DPOLoss(0.1), optimizer=torch.optim.AdamW, reference=copy.deepcopy(loaded.model))
    module.train()
    assert isinstance(module.reference, FrozenCopy)
    assert not module.reference.model.training and module.policy.training
    assert not any(p.requires_grad for p in module.reference.parameters())
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint["state_dict"] and not any(k.startswith("reference.") for k in checkpoint["state_dict"])


def test_reference_free_loss_holds_a_reference_only_for_the_kl():
    loaded = build_tiny_llama()
    batch = make_batch(loaded.tokenizer)
    module = DPOModule(loaded.model, SimPOLoss(), optimizer=torch.optim.AdamW, compute_kl=False)
    assert isinstance(module.reference, NoReference) and not module.reference.can_run
    out, _, kl = module(batch)
    assert kl is None and torch.isfinite(out.losses).all()
    module = DPOModule(loaded.model, SimPOLoss(), optimizer=torch.optim.AdamW, compute_kl=True)
    assert isinstance(module.reference, FrozenCopy)  # the KL needs the starting model
    _, _, kl = module(batch)
    assert_close(kl, torch.zeros_like(kl), atol=1e-6, rtol=0)


def test_build_reference_picks_the_kind_from_the_settings(tmp_path):
    loaded = build_tiny_llama()
    lora = wrap_lora(copy.deepcopy(loaded.model), r=2, alpha=4, dropout=0.0)
    dpo, simpo = DPOLoss(0.1), SimPOLoss()
    assert isinstance(build_reference(loaded.model, dpo), FrozenCopy)
    assert isinstance(build_reference(lora, dpo), AdapterDisabled)
    assert isinstance(build_reference(loaded.model, simpo, compute_kl=False), NoReference)
    for policy, live in ((loaded.model, FrozenCopy), (lora, AdapterDisabled)):
        ref = build_reference(policy, dpo, precompute=True, cache_dir=str(tmp_path))
        assert isinstance(ref, Precomputed) and isinstance(ref.live, live) and not ref.has_token_kl
    # nothing to precompute for a loss that uses no reference log-probs: the live reference gives the KL
    assert isinstance(build_reference(loaded.model, simpo, precompute=True), FrozenCopy)


def test_precomputed_reference_scores_by_lookup_and_frees_a_frozen_copy():
    loaded = build_tiny_llama()
    batch = make_batch(loaded.tokenizer)
    live = DPOModule(loaded.model, DPOLoss(0.1), optimizer=torch.optim.AdamW)
    expected = live.reference.score(batch, live.scorer, live(batch)[1]).logps
    logps = ReferenceLogps.build(batch.pair_keys, expected.chosen, expected.rejected)
    module = DPOModule(
        loaded.model,
        DPOLoss(0.1),
        optimizer=torch.optim.AdamW,
        reference=Precomputed(FrozenCopy(copy.deepcopy(loaded.model)), logps=logps),
    )
    assert module.reference.can_run and not module.compute_kl
    precompute_reference(module)  # the numbers are given: nothing to compute, and the copy is freed
    assert module.reference.live is None and not module.reference.can_run
    out, _, kl = module(batch)
    assert kl is None
    assert_close(out.losses, torch.full((2,), math.log(2)))  # policy == the reference the numbers came from
