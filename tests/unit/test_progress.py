"""No silent phase: generate()'s bar (answers done, the batch's tokens), the precomputed reference's bar (pairs
scored, none when the cache has them all), and evaluate.py saying when num_prompts is capped by the data."""

from __future__ import annotations

import logging

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import SMOKE, compose
from dpo_lightning.core import refcache
from dpo_lightning.core.generation import generate
from dpo_lightning.lightning.precompute import ScoringProgress, all_pairs_loader, pairs_of_rank
from dpo_lightning.tasks.evaluate import HeldOut, sample_prompts


@pytest.fixture(scope="module")
def tiny():
    from dpo_lightning.models import build_tiny_llama

    return build_tiny_llama()


@pytest.fixture(scope="module")
def datamodule(tiny):
    dm = instantiate(compose(*SMOKE).data, tokenizer=tiny.tokenizer, report_path=None)  # 16 + 8 pairs
    dm.setup()
    return dm


def test_generate_shows_answers_and_tokens_and_answers_alike(tiny, datamodule, capsys):
    prompts = [t.prompt for t in datamodule.val_tokens[:3]]
    args = dict(max_new_tokens=6, do_sample=False, batch_size=2)
    quiet = generate(tiny.model, tiny.tokenizer, prompts, **args)
    assert capsys.readouterr().err == ""  # no description, no bar
    shown = generate(tiny.model, tiny.tokenizer, prompts, progress="greedy answers", **args)
    err = capsys.readouterr().err
    assert "greedy answers:" in err and "/3 [" in err and "answer/s" in err
    assert "token 6/6" in err and "tokens/s" in err  # each batch's last token is shown
    assert shown.texts == quiet.texts and shown.tokens == quiet.tokens  # the ticker stops nothing


@pytest.mark.parametrize(("world_size", "rank"), [(1, 0), (2, 0), (2, 1), (3, 2)])
def test_the_pairs_a_rank_scores(datamodule, world_size, rank):
    loader = all_pairs_loader(datamodule)
    mine = [len(b.pair_keys) for i, b in enumerate(loader) if i % world_size == rank]
    assert pairs_of_rank(len(loader.dataset), loader.batch_size, rank, world_size) == sum(mine)


def test_the_reference_pass_shows_pairs_scored_and_nothing_from_a_full_cache(datamodule, tmp_path, capsys):
    loader = all_pairs_loader(datamodule)
    total = pairs_of_rank(len(loader.dataset), loader.batch_size, 0, 1)
    assert total == 24

    def score(batch):
        n = len(batch.pair_keys)
        return torch.zeros(n), torch.ones(n)

    progress = ScoringProgress(score, total, shown=True)
    logps = refcache.load_or_compute(tmp_path / "ref.pt", progress, loader)
    progress.close()
    assert len(logps) == 24 and progress.bar.n == 24
    err = capsys.readouterr().err
    assert "reference log-probs: 100%" in err and "24/24" in err and "pair/s" in err
    again = ScoringProgress(score, None, shown=True)
    assert len(refcache.load_or_compute(tmp_path / "ref.pt", again, loader)) == 24
    again.close()
    assert again.bar is None and "reference log-probs" not in capsys.readouterr().err  # all from the cache


def test_evaluate_says_when_the_held_out_data_caps_num_prompts(datamodule, caplog):
    cfg = OmegaConf.create({"seed": 0, "generation": {"num_prompts": 8}})
    two = HeldOut(datamodule.val_pairs[:2], datamodule.val_tokens[:2], None, "builtin:val")
    with caplog.at_level(logging.WARNING, logger="dpo_lightning.tasks.evaluate"):
        assert sample_prompts(cfg, two) == [0, 1]
    assert "generation.num_prompts=8 but the held-out data (builtin:val) has 2 pairs" in caplog.text
    assert "over 2 prompts" in caplog.text
    caplog.clear()
    cfg.generation.num_prompts = 2
    with caplog.at_level(logging.WARNING, logger="dpo_lightning.tasks.evaluate"):
        assert sample_prompts(cfg, two) == [0, 1]
    assert caplog.text == ""
