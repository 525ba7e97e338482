"""`ExportFinal`: at the end of fit, save the policy in Hugging Face format under `<run>/final/`.

Full fine-tuning: `final/` loads with `AutoModelForCausalLM.from_pretrained`. With LoRA: `final/` is the adapter
(`PeftModel.from_pretrained(base, final)`) and `final/merged/` a merged full copy. Each folder is written next
to its destination and renamed into place, so a crash mid-save never leaves a half-written `final/`.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from ...models.lora import is_peft_model
from ..checkpointing import payload_bytes, raise_if_disk_full
from ..strategies import full_policy_state_dict

log = logging.getLogger(__name__)


class ExportFinal(Callback):
    def __init__(self, dirpath: str, merge_adapter: bool = True) -> None:
        self.dirpath = Path(dirpath)
        self.merge_adapter = merge_adapter

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        state_dict = full_policy_state_dict(trainer, pl_module)  # sharded strategies: gathered on rank 0
        if trainer.is_global_zero:
            export_policy(
                pl_module.trained_model,
                getattr(trainer.datamodule, "tokenizer", None),
                self.dirpath,
                self.merge_adapter,
                state_dict,
            )
        trainer.strategy.barrier("export_final")


def export_policy(policy, tokenizer, dirpath: Path, merge_adapter: bool = True, state_dict=None) -> Path:
    dirpath = Path(dirpath)
    tmp = dirpath.with_name(dirpath.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if state_dict is not None:
        merge_adapter = False  # merging needs the whole model in memory; load final/ and merge offline instead
    quantized = getattr(policy, "is_loaded_in_4bit", False) or getattr(policy, "is_loaded_in_8bit", False)
    merge = is_peft_model(policy) and merge_adapter and not quantized  # QLoRA: the adapter alone
    try:
        _save(policy, tokenizer, tmp, state_dict)
        if merge:
            _save(copy.deepcopy(policy).merge_and_unload(), tokenizer, tmp / "merged")
    except (OSError, RuntimeError) as error:  # e.g. a full disk: the previous final/ stays as it was
        shutil.rmtree(tmp, ignore_errors=True)
        weights = payload_bytes(state_dict if state_dict is not None else dict(policy.state_dict()))
        raise_if_disk_full(dirpath, weights * (2 if merge else 1), error)
        raise
    old = dirpath.with_name(dirpath.name + ".old")
    if dirpath.exists():
        os.replace(dirpath, old)
    os.replace(tmp, dirpath)
    shutil.rmtree(old, ignore_errors=True)
    log.info("Final policy saved to %s", dirpath)
    return dirpath


def _save(model, tokenizer, path: Path, state_dict=None) -> None:
    model.save_pretrained(path, state_dict=state_dict, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
