"""The online loop's sampling phase alone: K answers per prompt from the policy in memory (`HFSampler`, the loop's
default backend), answers and new tokens per second, by cache and compilation variant.

    python bench/sampling.py --shape llama1b --device cuda --dtype bfloat16 --tokenizer .devcarry/tokenizer
    python bench/sampling.py --shape tiny --device cpu --dtype float32 --prompts 4 --k 2 --new-tokens 8   # a check

Variants (`--variants`, comma-separated): `dynamic` (transformers' default KV cache, what the loop uses), `static`
(a preallocated static cache: no reallocation as answers grow), `compiled` (static cache and the decoder's forward
under torch.compile, as transformers recommends for it). A random-init model rarely emits EOS, so every answer runs
the full `--new-tokens`: the figures are the loop's worst case. Each variant runs a warm chunk first (compilation,
allocator), then the timed run; one JSON line per variant on stdout, and all of them in `--out` when given.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from trainers import peak_memory, sync

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from dpo_lightning.models import build_random_llama, build_tiny_llama  # noqa: E402
from dpo_lightning.tasks.online.pairs import Sampling  # noqa: E402
from dpo_lightning.tasks.online.samplers import HFSampler  # noqa: E402


def prompts(tokenizer, n: int, data: str | None) -> list[list[int]]:
    """`n` prompts' token ids: HH-RLHF's (`--data`), else the built-in set's, with the chat template."""
    from dpo_lightning.data import HHFormat, PreferenceFormat, builtin_file, read_json_rows

    if data:
        texts = [p.prompt for p in HHFormat().load(read_json_rows(data))[:n]]
        return [tokenizer(t)["input_ids"][-256:] for t in texts]
    pairs = PreferenceFormat().load(read_json_rows(builtin_file("train")))[:n]
    turns = [[{"role": "user", "content": p.prompt}] for p in pairs]
    texts = [tokenizer.apply_chat_template(t, add_generation_prompt=True, tokenize=False) for t in turns]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def run(args, variant: str) -> dict:
    tokenizer = {"tokenizer_from": args.tokenizer} if args.tokenizer else {}
    if args.shape == "tiny":
        loaded = build_tiny_llama(**tokenizer)
    else:
        loaded = build_random_llama(args.shape, dtype=args.dtype, device=args.device, **tokenizer)
    model = loaded.model.to(device=args.device, dtype=getattr(torch, args.dtype)).eval()
    if variant in ("static", "compiled"):
        model.generation_config.cache_implementation = "static"
    if variant == "compiled":
        model.forward = torch.compile(model.forward, mode="reduce-overhead", fullgraph=True)
    sampling = Sampling(
        samples_per_prompt=args.k, temperature=1.0, max_new_tokens=args.new_tokens, batch_size=args.batch
    )
    sampler = HFSampler(model, loaded.tokenizer, sampling, torch.device(args.device))
    ids = (prompts(loaded.tokenizer, args.prompts, args.data) * args.prompts)[: args.prompts]
    chunk = sampling.prompts_per_chunk
    sampler(ids[:chunk], seed=0)  # warm: compilation, the allocator, the kernels' first runs
    sync(args.device)
    before = peak_memory(args.device)
    start = time.perf_counter()
    answers = 0
    for at in range(0, len(ids), chunk):
        answers += sum(len(a) for a in sampler(ids[at : at + chunk], seed=at))
    sync(args.device)
    seconds = time.perf_counter() - start
    tokens = answers * args.new_tokens  # an upper bound: answers cut at EOS are shorter
    return {
        "variant": variant,
        "shape": args.shape,
        "prompts": len(ids),
        "k": args.k,
        "new_tokens": args.new_tokens,
        "rows_per_chunk": chunk * args.k,
        "seconds": round(seconds, 3),
        "answers_per_second": round(answers / seconds, 2),
        "new_tokens_per_second_at_most": round(tokens / seconds, 1),
        "peak_memory_gib": round(max(before, peak_memory(args.device)), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="llama1b")
    p.add_argument("--tokenizer", default=None, help="a tokenizer folder (default: the embedded SmolLM2's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--data", default=None, help="HH-RLHF jsonl(.gz) for the prompts (default: the built-in set)")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--batch", type=int, default=512, help="generated rows per chunk (online.sampling.batch_size)")
    p.add_argument("--variants", default="dynamic,static,compiled")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    print("python bench/sampling.py " + " ".join(sys.argv[1:]), flush=True)
    results = []
    for variant in args.variants.split(","):
        try:
            results.append(run(args, variant))
        except Exception as error:  # one variant failing (e.g. compilation) never hides the others
            results.append({"variant": variant, "error": f"{type(error).__name__}: {str(error)[:300]}"})
        print(json.dumps(results[-1]), flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
