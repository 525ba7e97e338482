"""`SampleGenerations`: at every (n-th) validation, the policy's and the reference's answers to fixed held-out
prompts, appended to `<run>/generations/samples.jsonl` and logged as a table to Weights & Biases or MLflow when
in use."""

from __future__ import annotations

import json
from pathlib import Path

from lightning import Callback, LightningModule, Trainer

from ...core.generation import generate
from ..strategies import gathered_root


class SampleGenerations(Callback):
    def __init__(
        self, dirpath: str, num_prompts: int = 4, max_new_tokens: int = 48, every_n_validations: int = 1
    ) -> None:
        self.dirpath = Path(dirpath)
        self.num_prompts, self.max_new_tokens, self.every_n = num_prompts, max_new_tokens, every_n_validations
        self.validations = 0

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.num_prompts <= 0:
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n:
            return
        with gathered_root(trainer) as sharded:  # FSDP2, FSDP: every rank generates, in lockstep; rank 0 writes
            if trainer.is_global_zero or sharded:
                self._sample(trainer, pl_module, sharded)

    def _sample(self, trainer: Trainer, pl_module: LightningModule, sharded: bool) -> None:
        datamodule = trainer.datamodule
        tokenizer, prompts = datamodule.tokenizer, [t.prompt for t in datamodule.val_tokens[: self.num_prompts]]
        if not prompts:
            return
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=False, device=pl_module.device, synced=sharded)
        policy = generate(pl_module.trained_model, tokenizer, prompts, **kwargs)
        reference_texts = [None] * len(prompts)  # without a reference model (SFT, precompute_ref) the policy alone
        if pl_module.reference.can_run:
            with pl_module.reference.run() as reference_model:
                reference_texts = generate(reference_model, tokenizer, prompts, **kwargs).texts
        if not trainer.is_global_zero:
            return
        step = trainer.global_step
        rows = [
            [step, tokenizer.decode(p, skip_special_tokens=True).strip(), pol, ref]
            for p, pol, ref in zip(prompts, policy.texts, reference_texts)
        ]
        columns = ["step", "prompt", "policy", "reference"]
        self.dirpath.mkdir(parents=True, exist_ok=True)
        with open(self.dirpath / "samples.jsonl", "a") as f:
            f.writelines(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n" for row in rows)
        for logger in trainer.loggers:
            if hasattr(logger, "log_table"):  # WandbLogger
                logger.log_table(key="val/generations", columns=columns, data=rows, step=step)
            elif type(logger).__name__ == "MLFlowLogger":  # a table artifact per validation
                table = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
                logger.experiment.log_table(logger.run_id, table, f"generations/step{step:06d}.json")
