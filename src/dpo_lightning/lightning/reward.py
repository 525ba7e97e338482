"""Reward models in the same framework: a Bradley–Terry scalar head on any `model=` option, trained on any `data=`
option by `train_reward.py` with the DPO run's data module, loggers, checkpoints, resume and bad-input handling.

`RewardModule` scores the chosen and the rejected sequence of every pair (the textbook layout: prompt+response rows)
with `AutoModelForSequenceClassification`'s own forward, so the reward is read where that class reads it (the last
token that is not padding): the exported `final/` scores exactly as the module did, and `evaluate.py judge=<final>`
uses it as a judge.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from ..core.batches import PackedBatch, TextbookBatch
from ..models.loading import sequence_classifier  # noqa: F401  (0.1's dpo_lightning.reward.sequence_classifier)
from .policy_module import PolicyModule


class BradleyTerryLoss(nn.Module):
    """-log σ(r(x, y_w) − r(x, y_l)) per pair (Bradley & Terry 1952; Ouyang et al. 2022), plus optionally
    `center_rewards_coefficient` · (r_w + r_l)² (Eisenstein et al. 2023), which keeps rewards centred on zero."""

    def __init__(self, center_rewards_coefficient: float = 0.0) -> None:
        super().__init__()
        if center_rewards_coefficient < 0:
            raise ValueError(f"module.center_rewards_coefficient must be >= 0, got {center_rewards_coefficient}")
        self.center = float(center_rewards_coefficient)

    def forward(self, chosen: Tensor, rejected: Tensor) -> Tensor:
        losses = -F.logsigmoid(chosen - rejected)
        if self.center:
            losses = losses + self.center * (chosen + rejected) ** 2
        return losses


class RewardMetrics(Metric):
    """Loss, accuracy (chosen scored strictly above rejected), margin and mean rewards, as exact sums."""

    full_state_update = False
    NAMES = ("loss", "accuracy", "margin", "rewards/chosen", "rewards/rejected")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in (*self.NAMES, "pairs"):
            self.add_state(name.replace("/", "_"), torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, losses: Tensor, chosen: Tensor, rejected: Tensor) -> None:
        values = (losses, chosen > rejected, chosen - rejected, chosen, rejected)
        for name, value in zip(self.NAMES, values):
            key = name.replace("/", "_")
            setattr(self, key, getattr(self, key) + value.detach().double().sum())
        self.pairs = self.pairs + chosen.numel()

    def compute(self) -> dict[str, Tensor]:
        return {name: (getattr(self, name.replace("/", "_")) / self.pairs.clamp(min=1)).float() for name in self.NAMES}


class RewardModule(PolicyModule):
    """`reward_model` is the sequence-classification model being trained; it has no reference. `optimizer` and
    `scheduler` are partials, as for `DPOModule`."""

    trained_model_name = "reward_model"

    def __init__(
        self,
        reward_model: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        center_rewards_coefficient: float = 0.0,
        disable_dropout: bool = True,
        sync_free: bool = False,
    ) -> None:
        super().__init__(reward_model, optimizer, scheduler, disable_dropout, sync_free)
        self.loss_fn = BradleyTerryLoss(center_rewards_coefficient)
        reward_model.train()
        self.train_metrics, self.val_metrics = RewardMetrics(), RewardMetrics()

    def forward(self, batch: TextbookBatch) -> tuple[Tensor, Tensor]:
        """(chosen rewards, rejected rewards), one per pair."""
        if isinstance(batch, PackedBatch):
            raise ValueError("a reward model scores whole sequences: set data.packing=false")
        scores = self.reward_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
        scores = scores.float()
        half = scores.shape[0] // 2
        return scores[:half], scores[half:]

    def _step(self, metrics: RewardMetrics, batch: TextbookBatch) -> Tensor:
        chosen, rejected = self(batch)
        losses = self.loss_fn(chosen, rejected)
        metrics.update(losses, chosen, rejected)
        return losses.mean()

    def training_step(self, batch: TextbookBatch, batch_idx: int) -> Tensor:
        return self.remember_loss(self._step(self.train_metrics, batch))

    def validation_step(self, batch: TextbookBatch, batch_idx: int) -> None:
        self._step(self.val_metrics, batch)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint of 0.1 named the reward model `policy`: its weights load under `reward_model`."""
        state = checkpoint.get("state_dict", {})
        if any(k.startswith("policy.") for k in state):
            checkpoint["state_dict"] = {("reward_model." + k[7:] if k.startswith("policy.") else k): v
                                        for k, v in state.items()}  # fmt: skip
        super().on_load_checkpoint(checkpoint)
