"""What "the reference" is for a run: one class per kind, each answering `score(batch, ...)`.

- `FrozenCopy`: full fine-tuning (the default). A second copy of the weights, one forward per step; token KL.
- `AdapterDisabled`: a PEFT (LoRA) policy. No second copy: the policy's forward with its adapter off; token KL.
- `Precomputed`: `module.precompute_ref=true`. One pass over every pair at fit start (cached on disk across runs),
  then a lookup; a frozen copy's memory is freed. No token KL.
- `SyncedCopy`: TR-DPO, `module.ref_sync_steps`. A frozen copy that moves toward the policy every few steps; it is
  written to checkpoints (a resumed run continues from the reference it had).
- `NoReference`: a reference-free loss (SimPO, ORPO, SFT) with `module.compute_kl=false`. Nothing.

`build_reference` picks the kind from the module's settings: the one place that decides. A reference never
receives gradients and never leaves eval mode; only one that moves is written to checkpoints
(`DPOModule.on_save_checkpoint`).
"""

from __future__ import annotations

import copy
import logging

from torch import nn

from ..logprobs import is_peft_model
from ..losses import PreferenceLoss
from .base import NoReference, Reference, ReferenceScores
from .live import AdapterDisabled, FrozenCopy, LiveReference, SyncedCopy, check_reference_sync
from .precomputed import Precomputed

log = logging.getLogger(__name__)


def build_reference(
    policy: nn.Module,
    loss: PreferenceLoss,
    model: nn.Module | None = None,
    precompute: bool = False,
    compute_kl: bool = True,
    cache_dir: str | None = None,
    sync_steps: int | None = None,
    sync_alpha: float = 0.6,
) -> Reference:
    """The reference a run needs, from the module's settings:
    - the loss needs no reference and no KL is asked for: `NoReference`;
    - else a live one: `model` frozen if given, the adapter-disabled policy for a PEFT policy, else a frozen copy
      of the policy as it is now (its starting weights);
    - `precompute` (and the loss uses reference log-probs): that live one wrapped in `Precomputed`;
    - `sync_steps`: a frozen copy that follows the policy (TR-DPO; refused where a reference cannot move)."""
    if sync_steps is not None:
        return synced_copy(policy, loss, model, precompute, sync_steps, sync_alpha)
    if not loss.requires_reference and not compute_kl:
        return NoReference()
    if model is not None:
        live: LiveReference = FrozenCopy(model)
    elif is_peft_model(policy):
        live = AdapterDisabled(policy)
    else:
        live = FrozenCopy(copy.deepcopy(policy))
    if precompute and loss.requires_reference:
        return Precomputed(live, cache_dir)
    if precompute:
        log.info(
            "module.precompute_ref=true, but %s uses no reference log-probs: nothing to precompute", type(loss).__name__
        )
    return live


def synced_copy(
    policy: nn.Module, loss: PreferenceLoss, model: nn.Module | None, precompute: bool, every: int, alpha: float
) -> SyncedCopy:
    lora = model is None and is_peft_model(policy)
    check_reference_sync(every, alpha, loss.requires_reference, precompute, lora)
    return SyncedCopy(copy.deepcopy(policy) if model is None else model, every, alpha)


__all__ = [
    "AdapterDisabled",
    "FrozenCopy",
    "LiveReference",
    "NoReference",
    "Precomputed",
    "Reference",
    "ReferenceScores",
    "SyncedCopy",
    "check_reference_sync",
    "build_reference",
]
