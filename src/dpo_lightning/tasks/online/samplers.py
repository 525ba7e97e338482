"""What answers the online loop's prompts: `online.sampling.backend`.

- `hf` (the default, and the tested CPU path): the policy in memory, `model.generate` batched with the KV cache;
- `vllm`: a vLLM engine over the current policy's folder (the initial model, or the previous round's final policy,
  merged for LoRA), for fast sampling on a GPU. vLLM is never required: it is imported only here, only then;
- `auto`: vllm when it is installed and a GPU is there, else hf.

A sampler answers a chunk of prompts (token ids, chat template applied) with K answers each, seeded by the chunk, so
a resumed round samples the same chunks again. vLLM's sampling is its own: its answers are not the hf backend's,
and are reproducible only on the same GPU and vLLM version.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from ...core.generation import generate

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "auto")


def vllm_usable() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def chosen_backend(backend: str) -> str:
    """The backend `online.sampling.backend` (checked by online_pairs.Sampling) stands for here."""
    if backend == "auto":
        return "vllm" if vllm_usable() else "hf"
    if backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ImportError(
            "online.sampling.backend=vllm: vllm is not installed (pip install vllm, on a CUDA machine); "
            "use online.sampling.backend=hf, or auto to take vllm only where it is installed"
        )
    return backend


class HFSampler:
    """K answers per prompt from the policy in memory (`model.generate`, top-p sampling)."""

    def __init__(self, policy: torch.nn.Module, tokenizer: Any, sampling: Any, device: torch.device) -> None:
        self.policy, self.tokenizer, self.sampling, self.device = policy, tokenizer, sampling, device

    def __call__(self, prompt_ids: list[list[int]], seed: int) -> list[list[str]]:
        k = self.sampling.samples_per_prompt
        rows = [ids for ids in prompt_ids for _ in range(k)]
        texts = generate(
            self.policy,
            self.tokenizer,
            rows,
            max_new_tokens=self.sampling.max_new_tokens,
            do_sample=True,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            seed=seed,
            batch_size=len(rows),
            device=self.device,
            progress=f"sampling {k} answers a prompt",
        ).texts
        return [texts[i * k : (i + 1) * k] for i in range(len(prompt_ids))]

    def close(self) -> None:
        self.policy = None  # the previous round's policy is not kept through training


class VLLMSampler:
    """K answers per prompt from a vLLM engine over `folder` (a full Hugging Face model folder). `engine` is passed
    to `vllm.LLM` (`online.sampling.vllm`: e.g. gpu_memory_utilization, dtype, enforce_eager): keep its memory share
    small enough to leave room for the training that follows in the same process."""

    def __init__(self, folder: str | Path, sampling: Any, seed: int, engine: dict[str, Any] | None = None) -> None:
        from vllm import LLM, SamplingParams

        self.sampling, self.params = sampling, SamplingParams
        log.info("vLLM sampling from %s", folder)
        self.llm = LLM(model=str(folder), tokenizer=str(folder), seed=seed, **(engine or {}))

    def __call__(self, prompt_ids: list[list[int]], seed: int) -> list[list[str]]:
        params = self.params(
            n=self.sampling.samples_per_prompt,
            temperature=self.sampling.temperature,
            top_p=self.sampling.top_p,
            max_tokens=self.sampling.max_new_tokens,
            seed=seed,
        )
        outputs = self.llm.generate([{"prompt_token_ids": list(ids)} for ids in prompt_ids], params, use_tqdm=False)
        return [[c.text for c in out.outputs] for out in outputs]

    def close(self) -> None:
        """Free the engine's GPU memory before the round trains."""
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except (ImportError, AssertionError, RuntimeError):  # older or newer vLLM: deleting the engine is enough
            pass
        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def save_policy(model: torch.nn.Module, tokenizer: Any, folder: Path) -> Path:
    """The initial policy as a model folder vLLM can load (when it has none: a random-init or embedded model)."""
    if not (folder / "config.json").is_file():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # a save that was stopped half-way
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        tmp.replace(folder)
    return folder
