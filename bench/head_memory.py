"""The LM head's log-probs of response tokens, forward + backward: our tiled head against the plain computation.

    python bench/head_memory.py                                  # GPU-workload head: 2048 tokens, 2048 x 128256, bf16
    python bench/head_memory.py --rows 512 --hidden 576 --vocab 49152 --dtype float32   # the embedded SmolLM2 head

"plain" is what a trainer without a fused head does (TRL's DPOTrainer among them): `logits = h W^T`, upcast to fp32,
log_softmax, gather the targets, and autograd for the backward. "tiled" is `dpo_lightning.core.logprobs.token_logps`.
Each runs in its own child process on the same random inputs; the memory figure is the peak memory (RSS on CPU,
`torch.cuda.max_memory_allocated` on GPU) of the first step above the inputs (weights and hidden states): the
gradients themselves plus the temporaries, i.e. what the head adds to a training step's peak. Seconds are those of
a second, identical step. `--src` imports dpo_lightning from another checkout (e.g. an older commit).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from trainers import peak_memory, sync

ROOT = Path(__file__).resolve().parents[1]


def child(args) -> dict:
    sys.path.insert(0, args.src)
    from torch import nn

    from dpo_lightning.core.logprobs import ResponseStates, token_logps

    torch.manual_seed(0)
    dtype, dev = getattr(torch, args.dtype), args.device
    head = nn.Linear(args.hidden, args.vocab, bias=False, dtype=dtype, device=dev)
    nn.init.normal_(head.weight, std=0.02)
    hidden = torch.randn(args.rows, args.hidden, dtype=dtype, device=dev).requires_grad_()
    targets = torch.randint(0, args.vocab, (args.rows,), device=dev)
    weights = torch.rand(args.rows, device=dev)  # a gradient per token, as the DPO loss gives

    def step() -> torch.Tensor:
        head.weight.grad = hidden.grad = None
        if args.impl == "plain":
            logps = torch.log_softmax(head(hidden).float(), -1).gather(-1, targets[:, None]).squeeze(-1)
        else:
            logps = token_logps(ResponseStates(targets, torch.zeros_like(targets), 1, hidden=hidden, head=head))
        (logps * weights).sum().backward()
        return logps.detach()

    before = peak_memory(dev)
    step()  # the first step sets the peak; the second is timed
    extra = peak_memory(dev) - before
    sync(dev)
    start = time.perf_counter()
    logps = step()
    sync(dev)
    seconds = time.perf_counter() - start
    return {
        "impl": args.impl,
        "src": args.src,
        "extra_peak_gib": extra,
        "seconds": seconds,
        "logps_sum": float(logps.sum()),
        "grad_w_norm": float(head.weight.grad.float().norm()),
        "grad_h_norm": float(hidden.grad.float().norm()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2048, help="response tokens")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--device", default="cpu", help="cpu (peak RSS) or cuda (torch.cuda.max_memory_allocated)")
    p.add_argument("--impls", default="plain,tiled", help="comma-separated: plain, tiled")
    p.add_argument("--src", default=str(ROOT / "src"), help="the dpo_lightning source tree to import")
    p.add_argument("--impl", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.impl:
        print(json.dumps(child(args)))
        return
    rows = []
    for impl in args.impls.split(","):
        cmd = [sys.executable, __file__, "--impl", impl] + [
            f"--{k}={getattr(args, k)}" for k in ("rows", "hidden", "vocab", "dtype", "device", "src")
        ]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
    print(f"command: python bench/head_memory.py {' '.join(sys.argv[1:])}")
    print(
        f"head: {args.rows} tokens x hidden {args.hidden} x vocab {args.vocab}, {args.dtype}, forward + backward, "
        f"{args.device}"
    )
    print("| impl | extra peak memory (GiB) | seconds | sum of log-probs | grad W norm | grad h norm |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        cells = [
            r["impl"],
            f"{r['extra_peak_gib']:.3f}",
            f"{r['seconds']:.2f}",
            f"{r['logps_sum']:.4f}",
            f"{r['grad_w_norm']:.5g}",
            f"{r['grad_h_norm']:.5g}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
