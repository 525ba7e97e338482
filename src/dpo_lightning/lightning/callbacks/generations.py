"""`SampleGenerations`: at every (n-th) validation, the policy's and the reference's answers to fixed held-out
prompts, appended to `<run>/generations/samples.jsonl` and logged as a table to Weights & Biases or MLflow when
in use.

Each validation's answers go through the evaluation's own checks of broken answers (`core/sample_checks`: empty,
one character or word repeated, a loop, one answer or one opening for every prompt). The policy's share of
degenerate answers is logged as `val/samples/degenerate` (so it lands in every logger and metrics.json), and any
problem is a warning naming the step; a run that ends with broken samples says so again in its last lines."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from lightning import Callback, LightningModule, Trainer

from ...core.generation import generate
from ...core.sample_checks import SampleCheck, check_answers
from ..strategies import gathered_root

log = logging.getLogger(__name__)

DEGENERATE_METRIC = "val/samples/degenerate"


class SampleGenerations(Callback):
    def __init__(
        self,
        dirpath: str,
        num_prompts: int = 4,
        max_new_tokens: int = 48,
        every_n_validations: int = 1,
        check: bool = True,
    ) -> None:
        self.dirpath = Path(dirpath)
        self.num_prompts, self.max_new_tokens, self.every_n = num_prompts, max_new_tokens, every_n_validations
        self.check = check
        self.validations = 0
        self.last: tuple[int, SampleCheck, SampleCheck | None] | None = None  # the last checked step's verdicts

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or self.num_prompts <= 0:
            return
        self.validations += 1
        if (self.validations - 1) % self.every_n:
            return
        with gathered_root(trainer) as sharded:  # FSDP2, FSDP: every rank generates, in lockstep; rank 0 writes
            if trainer.is_global_zero or sharded:
                self._sample(trainer, pl_module, sharded)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The run's last lines say it when its last samples were broken (the per-step warning is far above)."""
        if self.last is None or not self.last[1].problems:
            return
        step, check, _ = self.last
        log.warning(
            "training ended with broken sample answers: at step %d, %d of %d of the policy's answers are degenerate "
            "(%s=%.2f): %s. Read %s before using this model",
            step,
            len(check.degenerate),
            check.answers,
            DEGENERATE_METRIC,
            check.share,
            check.summary(),
            self.dirpath / "samples.jsonl",
        )

    def _sample(self, trainer: Trainer, pl_module: LightningModule, sharded: bool) -> None:
        datamodule = trainer.datamodule
        tokenizer, prompts = datamodule.tokenizer, [t.prompt for t in datamodule.val_tokens[: self.num_prompts]]
        if not prompts:
            return
        step, started = trainer.global_step, time.perf_counter()
        kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=False, device=pl_module.device, synced=sharded)
        shown = trainer.is_global_zero  # one bar: rank 0's
        policy = generate(
            pl_module.trained_model, tokenizer, prompts, progress=f"samples at step {step}" if shown else None, **kwargs
        )
        reference_texts = [None] * len(prompts)  # without a reference model (SFT, precompute_ref) the policy alone
        if pl_module.reference.can_run:
            with pl_module.reference.run() as reference_model:
                progress = f"reference samples at step {step}" if shown else None
                reference_texts = generate(reference_model, tokenizer, prompts, progress=progress, **kwargs).texts
        if not trainer.is_global_zero:
            return
        answers = len(prompts) * (2 if reference_texts[0] is not None else 1)
        seconds = time.perf_counter() - started
        log.info("sample generations at step %d: %d answers in %.1f s (%.2f answers/s)", step, answers, seconds,
                 answers / max(seconds, 1e-9))  # fmt: skip
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
        if self.check:
            reference = None if reference_texts[0] is None else check_answers(reference_texts)
            self._report(pl_module, step, check_answers(policy.texts), reference, untemplated_hint(datamodule))

    def _report(
        self,
        pl_module: LightningModule,
        step: int,
        check: SampleCheck,
        reference: SampleCheck | None,
        hint: str = "",
    ) -> None:
        """The share of degenerate answers to every logger, and a warning naming the step for any problem."""
        self.last = (step, check, reference)
        pl_module.log(DEGENERATE_METRIC, check.share, rank_zero_only=True)  # only rank 0 gets here
        if not check.problems:
            return
        if reference is None:
            ref = ""
        elif reference.problems:
            ref = f" The reference's answers too ({len(reference.degenerate)} of {reference.answers} degenerate)."
        else:
            ref = " The reference's answers to the same prompts are not: the change came with training."
        log.warning(
            "step %d: the policy's sample answers look %s, %d of %d degenerate (%s=%.2f): %s.%s%s See %s",
            step,
            "broken" if check.degenerate else "collapsed",
            len(check.degenerate),
            check.answers,
            DEGENERATE_METRIC,
            check.share,
            check.summary(),
            ref,
            hint,
            self.dirpath / "samples.jsonl",
        )


def untemplated_hint(datamodule: Any) -> str:
    """What to change when the data, not training, may be why: plain-text prompts fed to a chat model without its
    template (`data.chat_template=false`), which an instruct model answers with nothing or a loop."""
    tokenizer = getattr(datamodule, "tokenizer", None)
    plain = [s.name for s in getattr(datamodule, "sources", []) if getattr(s, "chat_template", None) is False]
    if not plain or not getattr(tokenizer, "chat_template", None):
        return ""
    which = "" if plain == ["data"] else f" of {', '.join(plain)}"  # a mixture names its sources
    return (
        f" The prompts{which} reach this chat model without its chat template (data.chat_template=false): an "
        "instruct model often answers bare text with nothing or a loop; data.chat_template=auto wraps plain-text "
        "prompts as user turns."
    )
