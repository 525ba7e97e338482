"""Generations from held-out prompts, and KL(policy || base) estimated from the policy's own samples."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from . import seeds
from .batches import pad_token_id
from .logprobs import upcast


@dataclass
class Generated:
    texts: list[str]
    tokens: list[list[int]]  # response token ids, up to and including EOS when it was produced


def bar_file() -> Any:
    """Where a progress bar draws: stderr, or, under a live Rich display (Lightning's RichProgressBar, which redirects
    stderr and would swallow a bar's carriage returns), the terminal that display draws on."""
    return getattr(sys.stderr, "rich_proxied_file", sys.stderr)


def left_padded(prompts: list[list[int]], pad_id: int, device) -> tuple[Tensor, Tensor]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    do_sample: bool,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    by_length: bool = False,
    synced: bool = False,
    progress: str | None = None,
) -> Generated:
    """Continue each prompt (token ids, as the model was trained on them) with the KV cache, each row cut at its
    EOS; seeded, so reruns agree. `by_length`: batches of prompts of similar length (less left padding), the
    answers returned in the prompts' order. `synced`: every process of a sharded model generates, each forward in
    lockstep until all are done (transformers' `synced_gpus`, which ZeRO-3 and FSDP need). `progress`: a
    description for a bar of the answers done (answers/s), the batch in hand's tokens beside it (None: no bar).
    """
    model.eval()
    pad = pad_token_id(tokenizer)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i])) if by_length else range(len(prompts))
    prompts = [prompts[i] for i in order]
    texts, tokens = [], []
    bar = tqdm(total=len(prompts), desc=progress, unit="answer", leave=False, disable=not progress, file=bar_file())
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start : start + batch_size]
        ids, mask = left_padded(chunk, pad, device)
        ticker = {"stopping_criteria": token_ticker(bar, ids.shape[1], max_new_tokens)} if progress else {}
        torch.manual_seed(seeds.generation_batch(seed, start))
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p} if do_sample else {"do_sample": False}
        )
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
            synced_gpus=synced,
            **sampling,
            **ticker,
        )
        bar.update(len(chunk))
        for row in out[:, ids.shape[1] :].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id) + 1]
            tokens.append(row)
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    bar.close()
    if by_length:  # back to the prompts' order
        place = {original: at for at, original in enumerate(order)}
        texts, tokens = [texts[place[i]] for i in range(len(order))], [tokens[place[i]] for i in range(len(order))]
    return Generated(texts, tokens)


def token_ticker(bar: tqdm, prompt_width: int, max_new_tokens: int, every_s: float = 0.5) -> Any:
    """For one batch (its prompts `prompt_width` wide): a stopping criterion that stops nothing, but shows "token
    k/max_new_tokens" and the batch's tokens/s beside `bar` at most every `every_s` seconds, so a long batch shows
    that it moves."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class TokenTicker(StoppingCriteria):
        def __init__(self) -> None:
            self.start, self.shown = time.perf_counter(), 0.0

        def __call__(self, input_ids: Tensor, scores: Any, **kwargs: Any) -> Tensor:
            now, made = time.perf_counter(), input_ids.shape[1] - prompt_width
            if now - self.shown >= every_s or made >= max_new_tokens:
                rate = made * input_ids.shape[0] / max(now - self.start, 1e-9)
                bar.set_postfix_str(f"token {made}/{max_new_tokens}, {rate:.1f} tokens/s")
                self.shown = now
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([TokenTicker()])


@torch.no_grad()
def sequence_logprob_sums(model: nn.Module, prompts: list[list[int]], responses: list[list[int]], device) -> Tensor:
    """log p(response | prompt) summed over the response tokens, one value per row."""
    model.eval()
    out = []
    for prompt, response in tqdm(list(zip(prompts, responses)), desc="scoring samples", leave=False):
        if not response:
            out.append(torch.tensor(0.0, dtype=torch.float64))
            continue
        ids = torch.tensor([prompt + response], device=device)
        logits = upcast(model(input_ids=ids).logits[0, len(prompt) - 1 : -1])
        out.append(logits.log_softmax(-1).gather(-1, ids[0, len(prompt) :, None]).sum().double().cpu())
    return torch.stack(out) if out else torch.zeros(0, dtype=torch.float64)


def sampled_kl(
    policy: nn.Module, base: nn.Module, prompts: list[list[int]], samples: Generated, device
) -> dict[str, float]:
    """Monte Carlo KL(policy || base) = E_{y ~ policy}[log pi(y|x) - log pi_base(y|x)], from the policy's samples
    at temperature 1 (any other temperature would estimate something else)."""
    lengths = torch.tensor([len(t) for t in samples.tokens], dtype=torch.float64)
    diff = sequence_logprob_sums(policy, prompts, samples.tokens, device) - sequence_logprob_sums(
        base, prompts, samples.tokens, device
    )
    return {
        "kl_per_sequence": diff.mean().item(),
        "kl_per_token": (diff.sum() / lengths.sum().clamp(min=1)).item(),
        "samples": len(samples.tokens),
    }
