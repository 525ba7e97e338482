"""Damaged files and full disks: a truncated checkpoint is recognised and skipped, a save that does not fit names the
path and the space and leaves the previous files whole, a damaged model cache is rebuilt."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections import namedtuple

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dpo_lightning.lightning import checkpointing
from dpo_lightning.lightning.checkpointing import (
    AtomicCheckpointIO,
    DiskFullError,
    checkpoint_problem,
    resumable_checkpoint,
)

Usage = namedtuple("Usage", "total used free")


def test_truncated_and_garbage_checkpoints_are_recognised(tmp_path):
    path = tmp_path / "a.ckpt"
    torch.save({"state_dict": {"w": torch.randn(1000)}, "global_step": 3}, path)
    assert checkpoint_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "not a readable checkpoint" in checkpoint_problem(path) or "truncated" in checkpoint_problem(path)
    path.write_bytes(b"garbage")
    assert "not a readable checkpoint" in checkpoint_problem(path)
    (tmp_path / "sharded.ckpt").mkdir()
    assert checkpoint_problem(tmp_path / "sharded.ckpt") == "an empty checkpoint directory"


def test_a_sharded_checkpoint_cut_off_mid_save_is_skipped_for_the_previous_whole_one(tmp_path, caplog):
    """trainer=fsdp's sharded save (Lightning's FSDPStrategy, one process): a whole one resumes; with its last files
    missing (a kill mid-save, after the `last.ckpt` link was replaced) resume=true takes the newest whole one."""
    from lightning.pytorch.strategies import FSDPStrategy

    strategy = FSDPStrategy(state_dict_type="sharded")
    for step in (2, 3):
        state = {"state_dict": {"w": torch.full((2,), float(step))}, "optimizer_states": [], "global_step": step}
        strategy.save_checkpoint(state, tmp_path / f"step{step}.ckpt")
        os.utime(tmp_path / f"step{step}.ckpt", (step, step))
    assert checkpoint_problem(tmp_path / "step3.ckpt") is None
    shutil.copytree(tmp_path / "step3.ckpt", tmp_path / "last.ckpt")
    assert resumable_checkpoint(tmp_path) == str(tmp_path / "last.ckpt")
    for cut in ("meta.pt", ".metadata"):  # the two files a sharded save writes last
        (tmp_path / "last.ckpt" / cut).unlink()
        with caplog.at_level(logging.WARNING):
            assert resumable_checkpoint(tmp_path) == str(tmp_path / "step3.ckpt")
        assert "incomplete sharded checkpoint" in caplog.text and cut in checkpoint_problem(tmp_path / "last.ckpt")
    (tmp_path / "ds.ckpt" / "checkpoint").mkdir(parents=True)  # DeepSpeed's layout, before its `latest` is written
    (tmp_path / "ds.ckpt" / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"x")
    assert "no latest" in checkpoint_problem(tmp_path / "ds.ckpt")
    (tmp_path / "ds.ckpt" / "latest").write_text("checkpoint")
    assert checkpoint_problem(tmp_path / "ds.ckpt") is None


def test_resume_falls_back_to_the_next_newest_whole_checkpoint(tmp_path, caplog):
    for step in (1, 2, 3):
        torch.save({"global_step": step, "w": torch.randn(100)}, tmp_path / f"step{step}.ckpt")
        os.utime(tmp_path / f"step{step}.ckpt", (step, step))
    os.symlink("step3.ckpt", tmp_path / "last.ckpt")
    assert resumable_checkpoint(tmp_path) == str(tmp_path / "last.ckpt")
    (tmp_path / "step3.ckpt").write_bytes((tmp_path / "step3.ckpt").read_bytes()[:200])
    with caplog.at_level(logging.WARNING):
        assert resumable_checkpoint(tmp_path) == str(tmp_path / "step2.ckpt")
    assert f"skipping checkpoint {tmp_path / 'last.ckpt'}" in caplog.text  # named, with the reason
    (tmp_path / "step3.ckpt").unlink()  # last.ckpt now points to a missing file
    assert resumable_checkpoint(tmp_path) == str(tmp_path / "step2.ckpt")
    assert resumable_checkpoint(tmp_path / "absent") is None


def test_a_full_disk_keeps_the_previous_checkpoint_and_names_path_and_space(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.ones(10)}, path)
    before = path.read_bytes()

    def fills_the_disk(self, checkpoint, tmp, storage_options=None):
        open(tmp, "wb").write(b"partial")
        raise RuntimeError(
            "[enforce fail at inline_container.cc] PytorchStreamWriter failed writing file: file write failed"
        )

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", fills_the_disk)
    monkeypatch.setattr(checkpointing.shutil, "disk_usage", lambda p: Usage(2**40, 2**40 - 2**20, 2**20))  # 1 MiB free
    expected = rf"no space left to write {path}: 1\.0 MiB free .* needs about 16\.0 MiB \(free at least 15\.0 MiB"
    with pytest.raises(DiskFullError, match=expected):
        io.save_checkpoint({"w": torch.ones(4 * 2**20)}, path)  # 16 MiB
    assert path.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))  # the old one whole, no stray file

    def no_space(self, checkpoint, tmp, storage_options=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", no_space)
    with pytest.raises(DiskFullError):
        io.save_checkpoint({"w": torch.ones(1)}, path)


def test_a_full_disk_during_export_keeps_the_previous_final(tmp_path, monkeypatch):
    from dpo_lightning.lightning.callbacks import export as export_module
    from dpo_lightning.models import build_tiny_llama

    loaded = build_tiny_llama()
    final = export_module.export_policy(loaded.model, loaded.tokenizer, tmp_path / "final")
    config = (final / "config.json").read_text()

    def no_space(model, tokenizer, path, state_dict=None):
        path.mkdir(parents=True, exist_ok=True)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export_module, "_save", no_space)
    with pytest.raises(DiskFullError, match=rf"no space left to write {tmp_path / 'final'}"):
        export_module.export_policy(loaded.model, loaded.tokenizer, tmp_path / "final")
    assert (final / "config.json").read_text() == config and not (tmp_path / "final.tmp").exists()


def test_a_damaged_model_cache_is_detected_and_rebuilt(tmp_path, monkeypatch, caplog):
    from safetensors.torch import save_file

    from dpo_lightning.models import embedded

    def fake_convert(gguf, out_dir):  # a small but well-formed converted folder
        save_file({"w": torch.randn(64, 64)}, out_dir / "model.safetensors")
        (out_dir / "config.json").write_text(json.dumps({"model_type": "llama"}))
        (out_dir / "tokenizer_config.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert", fake_convert)
    monkeypatch.setattr(embedded, "find_gguf", lambda name: tmp_path / "model.gguf")
    target = embedded.resolve_embedded("embedded:smollm2-135m-instruct", tmp_path)
    assert embedded.cache_problem(target) is None
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    assert "holds 1000 bytes" in embedded.cache_problem(target)
    with caplog.at_level(logging.WARNING):
        again = embedded.resolve_embedded("embedded:smollm2-135m-instruct", tmp_path)
    assert again == target and embedded.cache_problem(target) is None
    assert f"the cached model {target} is damaged" in caplog.text


@pytest.mark.parametrize("state_dict_type", ["sharded", "full"])
def test_an_fsdp_save_at_the_last_link_replaces_the_link_not_the_checkpoint_it_points_to(state_dict_type, tmp_path):
    """trainer=fsdp's strategy (one process, no process group): a save at `last.ckpt`, a link to step3.ckpt, writes a
    new last.ckpt and leaves step3.ckpt as it was. Lightning's own FSDPStrategy writes a sharded save through the link,
    into step3.ckpt's folder (its one-file save already renames over the link)."""
    from lightning.pytorch.strategies import FSDPStrategy

    from dpo_lightning.lightning.strategies import LinkSafeFSDPStrategy

    def state(step):
        return {"state_dict": {"w": torch.full((2,), float(step))}, "optimizer_states": [], "global_step": step}

    def saved_step(path):
        return torch.load(path / "meta.pt" if path.is_dir() else path, weights_only=False)["global_step"]

    for cls in (FSDPStrategy, LinkSafeFSDPStrategy):
        folder = tmp_path / cls.__name__
        folder.mkdir()
        strategy = cls(state_dict_type=state_dict_type)
        strategy.save_checkpoint(state(3), folder / "step3.ckpt")
        os.symlink("step3.ckpt", folder / "last.ckpt")
        strategy.save_checkpoint(state(5), folder / "last.ckpt")
        overwritten = cls is FSDPStrategy and state_dict_type == "sharded"
        assert saved_step(folder / "step3.ckpt") == (5 if overwritten else 3), cls.__name__
        assert (folder / "last.ckpt").is_symlink() is overwritten and saved_step(folder / "last.ckpt") == 5
