"""`StepTimer`: the speed and memory of every optimizer step, logged with the other train/ metrics.

- `train/step_seconds`: wall clock from the end of the previous optimizer step to the end of this one (data,
  forward, backward, optimizer; the device synchronised first, so queued GPU work is counted where it ran);
- `train/tokens_per_second`: the tokens of the step counted the textbook way (every response with its prompt);
- `train/peak_memory_gib`: the peak GPU memory allocated so far (`torch.cuda.max_memory_allocated`), or the
  process's peak RSS on a CPU;
- `train/mfu` (with `peak_tflops`, the device's dense peak): model FLOPs utilisation, counting 8 x the policy's
  matrix parameters per token (forward and backward of the policy, forward of the reference) as the benchmark does.

The figures are read every `trainer.log_every_n_steps` optimizer steps (1 on the CPU trainer: every step), as the
mean over the steps since the last read, so the device is synchronised only when the loggers take their values.
The first steps of a fit (compilation, allocator warm-up) are timed like the others; read steady-state figures
from later steps.
"""

from __future__ import annotations

import resource
import time

import torch
from lightning import Callback, LightningModule, Trainer

from ...core.batches import PROMPT, PackedBatch
from ...core.logprobs import unwrap


def textbook_tokens(batch) -> torch.Tensor:
    """Tokens of a batch as the textbook layout has them: prompt+chosen and prompt+rejected for every pair (a
    tensor on the batch's device: read once per optimizer step, after the step's sync)."""
    if isinstance(batch, PackedBatch):
        real = batch.segment_ids >= 0
        return real.sum() + (real & (batch.branch_ids == PROMPT)).sum()
    return batch.attention_mask.sum()


def matmul_parameters(model: torch.nn.Module) -> int:
    """Parameters that multiply every token: all but the input embedding (a lookup), the LM head even when tied."""

    inner = unwrap(model)
    output = inner.get_output_embeddings()  # None for a sequence classifier (a reward model's small score head)
    embedding = inner.get_input_embeddings().weight
    total = sum(p.numel() for p in inner.parameters()) - embedding.numel()
    return total + (output.weight.numel() if output is not None and output.weight is embedding else 0)


class StepTimer(Callback):
    def __init__(self, peak_tflops: float | None = None) -> None:
        self.peak_tflops = peak_tflops
        self.last: float | None = None
        self.tokens: torch.Tensor | int = 0  # this optimizer step's tokens so far
        self._step_tokens: torch.Tensor | int | None = None  # set when the step's optimizer has run
        self._window_tokens: torch.Tensor | int = 0  # the tokens of the optimizer steps since the last read
        self._window_steps = 0
        self.flops_per_token = 0.0

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.flops_per_token = 8.0 * matmul_parameters(pl_module.trained_model)
        self._sync(pl_module)
        self.last = time.perf_counter()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.tokens = self.tokens + textbook_tokens(batch)

    def on_before_optimizer_step(self, trainer: Trainer, pl_module: LightningModule, optimizer) -> None:
        self._step_tokens = self.tokens  # the micro-batches of this optimizer step
        self.tokens = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if self._step_tokens is None or self.last is None:
            return  # mid-accumulation: the optimizer step has not happened yet
        self._window_tokens, self._window_steps = self._window_tokens + self._step_tokens, self._window_steps + 1
        self._step_tokens = None
        last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        if self._window_steps < max(1, trainer.log_every_n_steps) and not last_step:
            return  # read with the loggers, not every step: no device sync in between
        self._sync(pl_module)
        now = time.perf_counter()
        seconds, self.last = (now - self.last) / self._window_steps, now
        tokens = int(self._window_tokens) / self._window_steps  # read after the sync: no extra device wait
        self._window_tokens, self._window_steps = 0, 0
        values = {
            "train/step_seconds": seconds,
            "train/tokens_per_second": tokens / seconds,
            "train/peak_memory_gib": self._peak_memory(pl_module),
        }
        if self.peak_tflops:
            values["train/mfu"] = self.flops_per_token * tokens / seconds / (self.peak_tflops * 1e12)
        pl_module.log_dict(values, on_step=True, on_epoch=False, batch_size=1)

    @staticmethod
    def _sync(pl_module: LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    @staticmethod
    def _peak_memory(pl_module: LightningModule) -> float:
        if pl_module.device.type == "cuda":
            return torch.cuda.max_memory_allocated(pl_module.device) / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
