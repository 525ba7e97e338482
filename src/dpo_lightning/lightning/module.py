"""`DPOModule`: the policy, its frozen reference, a preference loss and the metrics, as one LightningModule."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy
from torch import Tensor, nn
from torch.nn.attention import sdpa_kernel

from ..core.batches import PairBatch
from ..core.lm_head import TOKEN_CHUNK, VOCAB_CHUNK
from ..core.logprobs import SDPA_BACKENDS, PairScorer, unwrap
from ..core.losses import LossOutput, PairLogps, PreferenceLoss
from ..core.reference import NoReference, Reference, build_reference
from ..models.loading import LoadedModel
from .metrics import PreferenceMetrics, log_metrics
from .policy_module import PolicyModule
from .precompute import precompute_reference, take_reference_key
from .strategies import is_sharded

log = logging.getLogger(__name__)


class DPOModule(PolicyModule):
    """Trains `policy` with `loss` against a reference (see `reference.py`): by default a frozen copy of the policy
    as given (its starting weights), or for a PEFT policy the same weights with the adapter disabled (no second copy);
    `reference=` a frozen model to use instead (or a model config's `LoadedModel`: `module.reference: {_target_:
    ...load_causal_lm, ...}`), or a ready `Reference`.

    `optimizer` and `scheduler` are partials (`_partial_: true` in config): `optimizer(params)` and
    `scheduler(optimizer, num_training_steps=...)`. With `precompute_ref`, the reference log-probs of every training
    and validation pair are computed once at fit start (or read from `ref_cache_dir`) and a separate reference model
    is then freed; the exact token KL needs the live reference, so train/kl and val/kl are not logged then.
    """

    def __init__(
        self,
        policy: nn.Module,
        loss: PreferenceLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        reference: nn.Module | LoadedModel | Reference | None = None,
        fused_head: bool = True,
        head_chunk_size: int = TOKEN_CHUNK,
        head_vocab_chunk_size: int | str = VOCAB_CHUNK,
        separate_halves: bool = True,
        compute_kl: bool = True,
        disable_dropout: bool = True,
        precompute_ref: bool = False,
        ref_cache_dir: str | None = None,
        activation_checkpointing: bool = False,
        compile: bool = False,
        sync_free: bool = False,
        ref_sync_steps: int | None = None,
        ref_sync_alpha: float = 0.6,
    ) -> None:
        super().__init__(policy, optimizer, scheduler, disable_dropout, sync_free)
        needs = dict(shared_prefix=loss.needs_shared_prefix, aligned=loss.needs_aligned)  # LD-DPO's, WPO's sums
        self.scorer = PairScorer(fused_head, head_chunk_size, head_vocab_chunk_size, separate_halves, **needs)
        self.loss_fn = loss
        # Built before the policy is changed below (checkpointing, compile): a frozen copy is of the policy as given.
        if isinstance(reference, LoadedModel):  # a model config in module.reference (the online loop's initial policy)
            reference = reference.model
        self.reference = (
            reference
            if isinstance(reference, Reference)
            else build_reference(
                policy, loss, reference, precompute_ref, compute_kl, ref_cache_dir, ref_sync_steps, ref_sync_alpha
            )
        )
        if loss.requires_reference and isinstance(self.reference, NoReference):
            raise ValueError(f"{type(loss).__name__} needs a reference")
        self.compute_kl = compute_kl and self.reference.has_token_kl
        if activation_checkpointing:  # recompute each decoder layer in backward: less memory, ~30% more compute
            unwrap(policy).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if compile:
            compile_layers(policy, self.reference.frozen_model())
        policy.train()  # from_pretrained returns eval mode, and Lightning keeps modules' modes as they are
        self.train_metrics = PreferenceMetrics(loss.extra_metrics)
        self.val_metrics = PreferenceMetrics(loss.extra_metrics)
        # A fixed reference is rebuilt from the model config, so its weights are not this module's state (in
        # checkpoints, sharded or not); a moving one's are (TR-DPO). Nor are the policy's frozen weights (the base
        # under an adapter: 540 MB of a 570 MB LoRA checkpoint of the embedded model), which training never changes
        # and a resume loads again from the config. Loading then tolerates their absence.
        self.frozen_policy_keys = frozenset(
            f"policy.{name}" for name, p in policy.named_parameters(remove_duplicate=False) if not p.requires_grad
        )
        self.register_state_dict_post_hook(without_rebuilt_weights)
        self.strict_loading = False

    # -- the step: policy -> reference -> loss ---------------------------------------------------------------------
    def forward(self, batch: PairBatch) -> tuple[LossOutput, PairLogps, Tensor | None]:
        states = self.scorer.states(self.policy, batch)
        policy = self.scorer.pairs(states, policy=True)
        if self.loss_fn.unpaired is not False:  # KTO (and SFT on KTO's data) read each row's label
            policy = replace(policy, labels=batch.pair_labels)
        reference = self.reference.score(batch, self.scorer, policy, states if self.compute_kl else None)
        return self.loss_fn(policy, reference.logps), policy, reference.kl

    def backward(self, loss: Tensor, *args: Any, **kwargs: Any) -> None:
        # Activation checkpointing recomputes attention inside backward: with the same SDPA kernels as the forward
        # (see logprobs.SDPA_BACKENDS), or the recomputed tensors would not match the saved ones.
        with sdpa_kernel(SDPA_BACKENDS):
            super().backward(loss, *args, **kwargs)

    def on_fit_start(self) -> None:
        # Under FSDP the tiled LM head needs nothing special: Lightning runs training_step and validation_step as
        # the root FSDP unit's forward, so the head's weight (in the root unit) is gathered while the head runs,
        # forward and backward (tests/e2e/test_distributed.py runs it sharded on two processes).
        precompute_reference(self)

    def setup(self, stage: str) -> None:
        if self.reference.moves and is_sharded(self.trainer):
            raise ValueError(
                "module.ref_sync_steps (TR-DPO) under a sharding strategy: the reference would be synced from "
                "sharded weights, which is not supported yet; use trainer=ddp (or a single device)"
            )
        check_data_for_loss(self.loss_fn, getattr(getattr(self.trainer, "datamodule", None), "label_counts", None))
        take_reference_key(self)  # before a strategy shards the weights (the precomputed reference's cache key)
        # A mixture's validation is also measured per source (val/<source>/...), beside the pooled val/ metrics.
        names = getattr(getattr(self.trainer, "datamodule", None), "source_names", None) or []
        if len(names) > 1 and not hasattr(self, "val_source_metrics"):
            extras = self.loss_fn.extra_metrics
            self.val_source_metrics = nn.ModuleDict({name: PreferenceMetrics(extras) for name in names})

    def _update(self, metrics: PreferenceMetrics, batch: PairBatch, per_source: nn.ModuleDict | None = None) -> Tensor:
        out, policy, kl = self(batch)
        metrics.update(out, policy, kl)
        for index, source_metrics in enumerate((per_source or {}).values()):
            # every source on every batch (empty ones add nothing): each rank has updated each metric it syncs
            source_metrics.update(*pair_subset(out, policy, batch.pair_sources == index))
        return out.losses.mean()

    def training_step(self, batch: PairBatch, batch_idx: int) -> Tensor:
        return self.remember_loss(self._update(self.train_metrics, batch))

    def validation_step(self, batch: PairBatch, batch_idx: int) -> None:
        self._update(self.val_metrics, batch, getattr(self, "val_source_metrics", None))

    def on_validation_epoch_end(self) -> None:
        for name, source_metrics in getattr(self, "val_source_metrics", {}).items():
            log_metrics(self, source_metrics, f"val/{name}", on_step=False)
        super().on_validation_epoch_end()

    # -- modes, optimizers, checkpoints --------------------------------------------------------------------
    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        # FSDP shards the gradients, so their norm is FSDP's own collective (Lightning's default refuses here).
        fsdp = isinstance(self.trainer.strategy, FSDPStrategy)
        norm = gradient_clip_val and (gradient_clip_algorithm or "norm") == "norm"
        if norm and fsdp:
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        if norm and not isinstance(self.trainer.strategy, DeepSpeedStrategy):
            # Lightning's clipping with multi-tensor kernels on every device (on a CPU it loops over the parameters)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, gradient_clip_val, foreach=True)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # after the step and before on_train_batch_end (where checkpoints are written): a checkpoint of step N holds
        # the reference as step N left it, so a resumed TR-DPO run syncs where the uninterrupted one does
        if self.reference.moves:
            self.reference.after_optimizer_step(self.policy, self.trainer.global_step)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        super().on_before_optimizer_step(optimizer)
        if self.reference.moves:  # the syncs before this step (TR-DPO)
            self.log("train/reference_syncs", float(self.trainer.global_step // self.reference.every), on_step=True)


def without_rebuilt_weights(module: DPOModule, state: dict[str, Any], prefix: str, metadata: Any) -> None:
    """The weights a resume rebuilds from the config: a fixed reference's and the policy's frozen ones (these only
    on one device or DDP: a sharding strategy's full state dict is also the final export's, which needs them)."""
    fixed_reference = not module.reference.moves
    trainer = module._trainer
    frozen = module.frozen_policy_keys if trainer is None or not is_sharded(trainer) else frozenset()
    for key in list(state):
        name = key[len(prefix) :]
        if (fixed_reference and name.startswith("reference.")) or name in frozen:
            del state[key]


def check_data_for_loss(loss: PreferenceLoss, label_counts: dict[str, int] | None) -> None:
    """Unpaired rows (labels) need an unpaired loss (KTO) and preference pairs a pairwise one; KTO's advice on the
    balance of its labels is logged."""
    if loss.unpaired is True and label_counts is None:
        raise ValueError(
            f"{type(loss).__name__} learns from labelled unpaired rows, but the data are preference pairs: use "
            "data=unpaired ({prompt, completion, label} rows) or data=unpaired_from_pairs (a preference set split)"
        )
    if loss.unpaired is False and label_counts is not None:
        raise ValueError(
            f"the data are unpaired rows ({label_counts}), which {type(loss).__name__} cannot learn from: use loss=kto"
        )
    message = loss.data_advice(label_counts)
    if message:
        log.warning(message)


def pair_subset(out: LossOutput, policy: PairLogps, keep: Tensor) -> tuple[LossOutput, PairLogps]:
    """The loss output and log-probs of the pairs where `keep` is true."""
    extras = {k: v[keep] for k, v in out.extras.items()}
    subset = LossOutput(out.losses[keep], out.chosen_rewards[keep], out.rejected_rewards[keep], extras)
    values = {f.name: getattr(policy, f.name) for f in fields(policy)}
    return subset, PairLogps(**{name: None if v is None else v[keep] for name, v in values.items()})


def compile_layers(*models: nn.Module | None) -> None:
    """torch.compile each decoder layer in place (parameter names unchanged; identical layers share one compiled
    graph, and `dynamic=True` avoids a recompile for every new sequence length)."""
    for model in models:
        if model is None:
            continue
        layers = getattr(unwrap(model).base_model, "layers", None)
        for layer in layers if layers is not None else [unwrap(model)]:
            layer.compile(dynamic=True)


__all__ = ["DPOModule"]
