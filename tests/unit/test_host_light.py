"""The host-light step's switches (module=fast): the sync-free non-finite guard, the LM head's `auto` tiles and the
foreach gradient clipping give the same training as the default step."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from dpo_lightning import DPOModule
from dpo_lightning.core.lm_head import GPU_TILE_ELEMENTS, VOCAB_CHUNK, vocab_tile
from dpo_lightning.core.losses import DPOLoss
from dpo_lightning.data import PackedPairCollator, TokenizedPair
from dpo_lightning.lightning.callbacks import NonFiniteError, NonFiniteGuard

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from nan_injection import InjectNaN  # noqa: E402

from conftest import tiny_llama  # noqa: E402


def pairs(n: int = 12) -> list[TokenizedPair]:
    g = torch.Generator().manual_seed(0)

    def ids(k: int) -> list[int]:
        return torch.randint(3, 97, (k,), generator=g).tolist()

    return [TokenizedPair(ids(4 + i % 3), ids(3 + i % 2), ids(5)) for i in range(n)]


def fit(sync_free: bool, action: str, nan_at: int | None = 2, steps: int = 5, log_every: int = 2) -> DPOModule:
    torch.manual_seed(0)
    policy = tiny_llama(hidden=32, dtype="float32")
    module = DPOModule(
        policy,
        DPOLoss(0.1),
        optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-2, fused=True),
        compute_kl=False,
        sync_free=sync_free,
    )
    callbacks = [NonFiniteGuard(action)] + ([InjectNaN(at_batch=nan_at)] if nan_at is not None else [])
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        log_every_n_steps=log_every,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=1.0,
        callbacks=callbacks,
    )
    trainer.fit(module, DataLoader(pairs(), batch_size=2, collate_fn=PackedPairCollator(0)))
    module.guard = callbacks[0]
    return module


def test_sync_free_skip_trains_exactly_as_the_syncing_guard():
    """A NaN step skipped on the device (the fused optimizer's found_inf) leaves the weights and AdamW's moments as
    clearing the gradients does: the two guards end with the same weights, and both count one skipped step."""
    syncing, sync_free = fit(False, "skip"), fit(True, "skip")
    assert syncing.guard.skipped == sync_free.guard.skipped == 1
    for (name, a), b in zip(syncing.policy.named_parameters(), sync_free.policy.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6, msg=name)
        assert torch.isfinite(b).all()


def test_sync_free_stop_raises_at_the_next_check_naming_the_bad_step():
    with pytest.raises(NonFiniteError, match=r"optimizer step 2 .*skipped on the device"):
        fit(True, "stop", nan_at=2, steps=5, log_every=2)


def test_without_a_nan_the_sync_free_step_is_the_default_step():
    a, b = fit(False, "stop", nan_at=None), fit(True, "stop", nan_at=None)
    for (name, p), q in zip(a.policy.named_parameters(), b.policy.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=0, msg=name)


def test_auto_head_tiles_one_tile_on_a_gpu_and_the_default_on_a_cpu():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert vocab_tile("auto", 2048, 128256, cpu) == VOCAB_CHUNK
    assert vocab_tile("auto", 2048, 128256, cuda) == 128256  # 2048 x 128256 logits fit the budget: one tile
    rows = 4096
    assert vocab_tile("auto", rows, 128256, cuda) == GPU_TILE_ELEMENTS // rows  # two tiles of 65536
    assert vocab_tile("auto", 10**6, 128256, cuda) == VOCAB_CHUNK  # never smaller than the default
    assert vocab_tile(1024, 2048, 128256, cuda) == 1024  # a number is a number
