"""The benchmark's workload: the model (the embedded weights or a random-init shape) and the tokenized pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from dpo_lightning.models.random_init import SHAPES as RANDOM_SHAPES  # noqa: E402  (this checkout's package)

HH_TEST = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
PRESETS = {
    "cpu": dict(
        model="embedded",
        batch=4,
        max_length=512,
        max_prompt_length=256,
        dtype="float32",
        device="cpu",
        steps=3,
        warmup=1,
        rounds=3,
    ),
    "gpu": dict(
        model="llama1b",
        batch=8,
        max_length=1024,
        max_prompt_length=512,
        dtype="bfloat16",
        device="cuda",
        steps=8,
        warmup=2,
        rounds=3,
    ),
}
# The random-init shapes (speed only) are the package's: llama1b (Llama-3.2-1B, tied head, 1.24B parameters),
# llama3_8b (untied head, 8.03B), smollm2, tiny.
SHAPES = tuple(RANDOM_SHAPES)


def load_model(args, dtype: torch.dtype):
    from dpo_lightning.models import load_causal_lm

    if args.model == "embedded":
        loaded = load_causal_lm(args.embedded, dtype=str(dtype).split(".")[-1])
        return loaded.model.to(args.device), loaded.tokenizer
    from dpo_lightning.models import build_random_llama

    # random init on the device: seconds instead of minutes on a CPU for the big shapes
    loaded = build_random_llama(
        args.model, args.tokenizer or "embedded:smollm2-135m-instruct", str(dtype).split(".")[-1], args.device
    )
    return loaded.model, loaded.tokenizer


def load_pairs(args, tokenizer):
    """Tokenized pairs that already fit max_length, so both trainers see identical token ids (no truncation)."""
    from dpo_lightning.data import HHFormat, PairTokenizer, read_json_rows
    from dpo_lightning.data.readers import BadRows

    n = args.batch * (args.steps + args.warmup)
    if args.data != "synthetic" and Path(args.data).is_file():
        pairs = HHFormat().load(read_json_rows(args.data), BadRows("skip"))
        tok = PairTokenizer(tokenizer, args.max_length, args.max_prompt_length, "keep_end")
        tokens = [t for t in map(tok, pairs[: 4 * n]) if t is not None and min(len(t.chosen), len(t.rejected)) > 0]
        return tokens[:n], f"HH-RLHF harmless-base test ({args.data})"
    from dpo_lightning.data import TokenizedPair

    g = torch.Generator().manual_seed(0)

    def length(median: float, cap: int) -> int:
        return int(min(cap, max(2, torch.empty(1).log_normal_(0.0, 0.8, generator=g).item() * median)))

    def ids(k: int) -> list[int]:
        return torch.randint(10, tokenizer.vocab_size, (k,), generator=g).tolist()

    tokens = []
    for _ in range(n):
        p = length(90, args.max_prompt_length)
        tokens.append(TokenizedPair(ids(p), ids(length(28, args.max_length - p)), ids(length(28, args.max_length - p))))
    return tokens, "synthetic (lognormal lengths: median prompt 90, response 28 tokens)"


def textbook_flops(model, pairs) -> float:
    """FLOPs of one DPO step done the textbook way without padding: 8·N·T + attention (see module docstring)."""
    cfg = model.config
    head, embedding = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    # parameters that multiply every token: all but the input embedding (a lookup), the LM head even when tied to it
    n = sum(p.numel() for p in model.parameters()) - embedding.numel() + (head.numel() if head is embedding else 0)
    lengths = [len(p.prompt) + len(r) for p in pairs for r in (p.chosen, p.rejected)]
    attention = sum(4 * cfg.num_hidden_layers * cfg.hidden_size * L * L for L in lengths)  # QK^T and AV, forward
    return 8 * n * sum(lengths) + 4 * attention  # forward (x1 policy, x1 reference) + backward (x2 policy)
