"""The reward model's loss by hand, its metrics, and the LM -> sequence-classifier conversion."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from dpo_lightning.lightning.reward import BradleyTerryLoss, RewardMetrics, sequence_classifier
from dpo_lightning.models import build_tiny_llama


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, 0.5, 1.0])
    # -log sigmoid(d) = log(1 + e^-d): d = 1, 0, -2
    expected = torch.tensor([math.log(1 + math.exp(-1)), math.log(2), math.log(1 + math.exp(2))])
    assert_close(BradleyTerryLoss()(chosen, rejected), expected)
    centred = BradleyTerryLoss(center_rewards_coefficient=0.01)(chosen, rejected)
    assert_close(centred, expected + 0.01 * torch.tensor([9.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="center_rewards_coefficient must be >= 0"):
        BradleyTerryLoss(-1)


def test_reward_metrics_are_exact_means_over_batches():
    metrics = RewardMetrics()
    metrics.update(torch.tensor([0.1, 0.3]), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
    metrics.update(torch.tensor([0.5]), torch.tensor([2.0]), torch.tensor([-1.0]))
    values = metrics.compute()
    assert values["accuracy"].item() == pytest.approx(2 / 3)  # a tie is not a win
    assert values["margin"].item() == pytest.approx((1 + 0 + 3) / 3)
    assert values["loss"].item() == pytest.approx(0.3)


def test_sequence_classifier_keeps_the_backbone_and_reads_the_last_non_pad_token():
    loaded = build_tiny_llama()
    reward = sequence_classifier(loaded).model.eval()
    lm = loaded.model.eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    hidden = lm.model(input_ids=ids).last_hidden_state
    assert_close(reward.model(input_ids=ids).last_hidden_state, hidden)  # the same backbone weights
    pad = reward.config.pad_token_id
    padded = torch.tensor([[5, 6, 7, 8, pad, pad]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    expected = reward.score(hidden)[0, -1, 0]  # the score at the last real token
    assert_close(reward(input_ids=padded, attention_mask=mask).logits[0, 0], expected, rtol=1e-5, atol=1e-6)
