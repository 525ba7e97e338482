"""A stand-in for vLLM's offline API (`LLM`, `SamplingParams`, `LLM.generate` over token-id prompts), for testing
the online loop's vLLM backend where vLLM cannot run (no GPU). It loads the folder it is given with transformers, as
vLLM would, samples with `model.generate`, and appends each engine's folder and each request to $FAKE_VLLM_LOG."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    seed: int | None = None


def _log(row: dict) -> None:
    with open(os.environ["FAKE_VLLM_LOG"], "a") as f:
        f.write(json.dumps(row) + "\n")


class LLM:
    def __init__(self, model: str, tokenizer: str, seed: int = 0, **engine) -> None:
        self.model = AutoModelForCausalLM.from_pretrained(model, use_safetensors=True).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        _log({"engine": model, "seed": seed, "args": engine})

    @torch.no_grad()
    def generate(self, prompts: list[dict], params: SamplingParams, use_tqdm: bool = True) -> list:
        _log({"prompts": len(prompts), "params": asdict(params)})
        torch.manual_seed(params.seed or 0)
        outputs = []
        for prompt in prompts:
            ids = torch.tensor([prompt["prompt_token_ids"]]).repeat(params.n, 1)
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                max_new_tokens=params.max_tokens,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
            texts = self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)
            outputs.append(SimpleNamespace(outputs=[SimpleNamespace(text=t) for t in texts]))
        return outputs
