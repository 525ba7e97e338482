"""What Lightning's own strategies need to know about a transformers model, for the trainer/ configs.

`decoder_layers()` names the class that every transformers decoder layer derives from, so `trainer=fsdp` wraps
(and, when asked, activation-checkpoints) each decoder layer of whichever model is loaded, policy and reference alike.
`full_policy_state_dict` gathers the policy's full weights from a sharded strategy for the final export.
"""

from __future__ import annotations

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from torch.distributed.fsdp import FullStateDictConfig, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP


def decoder_layers() -> set[type]:
    """{GradientCheckpointingLayer}: the base class of every decoder layer in transformers (Llama, Mistral, ...)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return {GradientCheckpointingLayer}


def full_policy_state_dict(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any] | None:
    """The policy's full state dict on rank 0 (None elsewhere) under FSDP or DeepSpeed ZeRO-3, gathered to CPU;
    None under other strategies, where the policy's own parameters are already whole. Every rank must call it."""
    if isinstance(trainer.strategy, DeepSpeedStrategy) and trainer.strategy.zero_stage_3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(pl_module.trained_model.parameters()), modifier_rank=None):
            state = pl_module.trained_model.state_dict()
            return {k: v.detach().cpu().clone() for k, v in state.items()} if trainer.is_global_zero else None
    if not isinstance(trainer.strategy, FSDPStrategy):
        return None

    config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
    with FSDP.state_dict_type(trainer.strategy.model, StateDictType.FULL_STATE_DICT, config):
        full = trainer.strategy.model.state_dict()
    prefix = pl_module.trained_model_name + "."
    return {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)} if trainer.is_global_zero else None
