"""What Lightning's own strategies need to know about a transformers model, for the trainer/ configs.

`decoder_layers()` names the class that every transformers decoder layer derives from, so `trainer=fsdp` wraps
(and, when asked, activation-checkpoints) each decoder layer of whichever model is loaded, policy and reference alike.
`FSDP2Strategy` is Lightning's `ModelParallelStrategy` (FSDP2: `fully_shard`, DTensor parameters) for data parallel
sharding alone: the `fully_shard` settings from `trainer=fsdp2`'s yaml, applied by the module's `configure_model`.
`full_policy_state_dict` gathers the policy's full weights from a sharded strategy for the final export.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal

import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule, FullStateDictConfig, MixedPrecisionPolicy, StateDictType, fully_shard
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP


def decoder_layers() -> set[type]:
    """{GradientCheckpointingLayer}: the base class of every decoder layer in transformers (Llama, Mistral, ...)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return {GradientCheckpointingLayer}


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 through Lightning's `ModelParallelStrategy`, every process one data parallel shard (no tensor
    parallelism): each decoder layer of each model in the module (the policy, a frozen reference copy) is its own
    `fully_shard` unit and the LightningModule the root unit, which holds the rest (embeddings, final norm, LM head),
    so the tiled head and the precomputed reference's pass run inside the root's forward as a training step does.

    `param_dtype` / `reduce_dtype` are `fully_shard`'s mixed precision (e.g. bfloat16 compute with float32 gradient
    reduction; None: the weights' own dtype); `reshard_after_forward` frees each layer's gathered weights after its
    forward (ZeRO-3; false: kept until backward, ZeRO-2 like, more memory and less communication)."""

    def __init__(
        self,
        data_parallel_size: Literal["auto"] | int = "auto",
        reshard_after_forward: bool = True,
        param_dtype: str | None = None,
        reduce_dtype: str | None = None,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
    ) -> None:
        super().__init__(data_parallel_size, 1, save_distributed_checkpoint, process_group_backend)
        self.reshard_after_forward = reshard_after_forward
        self.mp_policy = MixedPrecisionPolicy(param_dtype=_dtype(param_dtype), reduce_dtype=_dtype(reduce_dtype))

    def setup_environment(self) -> None:
        if self._data_parallel_size == "auto":  # every process one shard (Lightning's auto is one per node)
            self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None) -> None:
        unlink_before_save(self, filepath)
        super().save_checkpoint(checkpoint, filepath, storage_options)

    def shard(self, module: LightningModule, models: list[nn.Module]) -> None:
        """`fully_shard` each decoder layer of `models`, then `module` as the root unit; once."""
        if isinstance(module, FSDPModule):
            return
        settings = dict(
            mesh=self.device_mesh["data_parallel"],
            mp_policy=self.mp_policy,
            reshard_after_forward=self.reshard_after_forward,
        )
        kinds = tuple(decoder_layers())
        for model in models:
            for layer in [m for m in model.modules() if isinstance(m, kinds)]:
                fully_shard(layer, **settings)
        fully_shard(module, **settings)


class LinkSafeFSDPStrategy(FSDPStrategy):
    """Lightning's FSDPStrategy (FSDP1, `trainer=fsdp`), whose sharded save at a `last.ckpt` link replaces the link
    rather than writing into the checkpoint folder it points to (as FSDP2Strategy does; a full, one-file save
    already renames over the link)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any | None = None) -> None:
        if self._state_dict_type == "sharded":
            unlink_before_save(self, filepath)
        super().save_checkpoint(checkpoint, filepath, storage_options)


def unlink_before_save(strategy: Any, filepath: Any) -> None:
    """A distributed checkpoint is a folder, written into: saved at `last.ckpt`, a link to an earlier checkpoint, it
    would overwrite that one (and a crash mid-save would leave it half new). The link is removed first, on rank 0, as
    a single-file save renames over it; every rank waits for that before it writes its shard."""
    path = Path(strategy.broadcast(filepath))
    if strategy.global_rank == 0 and path.is_symlink():
        path.unlink()
    strategy.barrier()


def _dtype(name: str | None) -> torch.dtype | None:
    return None if name is None else getattr(torch, name)


def is_sharded(trainer: Trainer) -> bool:
    """The strategy shards the weights (FSDP, FSDP2 or DeepSpeed): a rank does not hold whole parameters."""
    return isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy, DeepSpeedStrategy))


def sharded_root(trainer: Trainer) -> nn.Module | None:
    """The module whose forward gathers the sharded weights (FSDP's root wrapper, FSDP2's root unit), None when the
    strategy does not shard them that way."""
    if isinstance(trainer.strategy, (FSDPStrategy, ModelParallelStrategy)):
        return trainer.strategy.model
    return None


@contextmanager
def gathered_root(trainer: Trainer) -> Iterator[bool]:
    """Under FSDP2 or FSDP, the root unit's weights (embeddings, final norm, LM head) gathered on every rank, so the
    models can run outside a training step, at the strategy's precision (generation: every rank must run each
    forward, the layers gathering their own); yields whether it did. A no-op elsewhere."""
    root = trainer.strategy.model
    if isinstance(trainer.strategy, FSDP2Strategy) and isinstance(root, FSDPModule):
        root.unshard()
        try:
            yield True
        finally:
            root.reshard()
    elif isinstance(trainer.strategy, FSDPStrategy) and isinstance(root, FSDP):
        # The root's flat weights alone, gathered in full precision. Under mixed precision the layers gather theirs
        # in param_dtype and take their inputs uncast (a training step runs under the precision plugin's autocast):
        # the pass runs under autocast at that dtype too.
        low = root.mixed_precision.param_dtype
        cast = torch.autocast(root.compute_device.type, low) if low not in (None, torch.float32) else nullcontext()
        with FSDP.summon_full_params(root, writeback=False, recurse=False), cast:
            yield True
    else:
        yield False


def full_policy_state_dict(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any] | None:
    """The policy's full state dict on rank 0 (None elsewhere) under FSDP, FSDP2 or DeepSpeed ZeRO-3, gathered to
    CPU; None under other strategies, where the policy's own parameters are already whole. Every rank must call it."""
    if isinstance(trainer.strategy, DeepSpeedStrategy) and trainer.strategy.zero_stage_3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(pl_module.trained_model.parameters()), modifier_rank=None):
            state = pl_module.trained_model.state_dict()
            return {k: v.detach().cpu().clone() for k, v in state.items()} if trainer.is_global_zero else None
    if isinstance(trainer.strategy, ModelParallelStrategy):
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_model_state_dict(trainer.strategy.model, options=options)
    elif isinstance(trainer.strategy, FSDPStrategy):
        config = FullStateDictConfig(offload_to_cpu=True, rank0_only=True)
        with FSDP.state_dict_type(trainer.strategy.model, StateDictType.FULL_STATE_DICT, config):
            full = trainer.strategy.model.state_dict()
    else:
        return None
    if not trainer.is_global_zero:
        return None
    prefix = pl_module.trained_model_name + "."
    return without_tied({k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}, pl_module.trained_model)


def without_tied(state: dict[str, Any], model: nn.Module) -> dict[str, Any]:
    """`state` without the second name of a tied parameter (the LM head that is the embedding): gathered, the two
    are separate tensors, and the export writes the model as an unsharded one's `save_pretrained` does."""
    first: dict[int, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        if first.setdefault(id(parameter), name) != name:
            state.pop(name, None)
    return state
