"""Our DPO training step against TRL's DPOTrainer, side by side, in one command.

    python bench/throughput.py                       # CPU: embedded SmolLM2-135M, batch 4, max_length 512, fp32
    python bench/throughput.py --preset gpu          # GPU: 1B Llama shape, bf16, batch 8, max_length 1024

Variant options: ours:packing=false (the textbook layout), checkpointing=true (activation checkpointing; TRL too),
compile=true, precompute_ref=true (reference log-probs computed before the timed steps, reference freed),
lora=true (LoRA r=16 on every linear layer, no reference copy; memory against full fine-tuning),
precision=bf16-mixed, dtype=float32|bfloat16 (weights), optim=foreach (the multi-tensor AdamW, on either side,
instead of the fused one); trl:padding_free=true, trl:precompute_ref=true (TRL's precompute_ref_log_probs: no
reference model, the pairs scored by the untrained policy in its constructor).

Every variant (ours, TRL, and ablations such as `ours:packing=false`) runs in its own child process on the same
weights, pairs, batch order, batch size, max_length and optimizer (fused AdamW, constant lr, no weight decay), so peak
memory (RSS on CPU, torch.cuda.max_memory_allocated on GPU) belongs to one trainer alone. Warm-up steps are excluded;
seconds per step is the wall clock from the end of the last warm-up step to the end of the last step (data loading,
forward, backward and optimizer included). Before timing, a parity check in fp32 scores the first batch both ways:
the step-0 losses and every pair's chosen/rejected log-probs must agree within a relative 1e-4.

MFU counts the FLOPs of the textbook computation without padding (policy forward+backward 6·N·T, reference
forward 2·N·T, plus attention, with T the prompt+response tokens of both sequences of every pair), the same
numerator for every variant, over the GPU's dense bf16 peak (--peak-tflops). Results: <out>/results.json, results.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from trainers import make_trl, options, peak_memory, run_ours, run_trl
from workload import HH_TEST, PRESETS, SHAPES, load_model, load_pairs, textbook_flops


def child(args) -> dict:
    name, opts = options(args.variant)
    dtype = getattr(torch, opts.get("dtype", args.dtype))
    policy, tokenizer = load_model(args, dtype)
    if "attn" in opts:  # attention implementation: sdpa (default) or eager
        policy.config._attn_implementation = opts["attn"]

    def load_reference():  # the runner holds the only handle, so a runner that frees it (precompute_ref) frees it
        reference = load_model(args, dtype)[0].eval().requires_grad_(False)
        reference.config._attn_implementation = policy.config._attn_implementation
        return reference

    pairs, source = load_pairs(args, tokenizer)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_memory("cpu")
    info: dict = {}
    ends = (run_ours if name == "ours" else run_trl)(args, opts, policy, load_reference, tokenizer, pairs, info)
    seconds = (ends[-1] - ends[args.warmup - 1]) / (len(ends) - args.warmup)
    result = {
        "variant": args.variant,
        "seconds_per_step": seconds,
        "pairs_per_second": args.batch / seconds,
        "peak_memory_gib": peak_memory(args.device),
        "rss_after_setup_gib": rss_before,
        "data": source,
        "steps_timed": len(ends) - args.warmup,
        **info,
    }
    if args.device.startswith("cuda"):
        result["alloc_retries"] = torch.cuda.memory_stats().get("num_alloc_retries", 0)
        flops = sum(
            textbook_flops(policy, pairs[i * args.batch : (i + 1) * args.batch]) for i in range(args.warmup, len(ends))
        ) / (len(ends) - args.warmup)
        result["mfu"] = flops / seconds / (args.peak_tflops * 1e12)
    return result


# -- parity: the first batch scored both ways in fp32 -----------------------------------------------------------
def parity(args) -> dict:
    from dpo_lightning.data import PackedPairCollator
    from dpo_lightning.data.tokenize import pad_token_id
    from dpo_lightning.logprobs import response_states, sequence_logps

    policy, tokenizer = load_model(args, torch.float32)
    reference = load_model(args, torch.float32)[0].eval()
    with torch.no_grad():  # a reference that differs from the policy, so the step-0 loss is not trivially ln 2
        g = torch.Generator(device=args.device).manual_seed(1)
        for p in reference.parameters():
            p.add_(torch.randn(p.shape, generator=g, device=p.device) * 1e-3 * p.std().clamp(min=1e-3))
    pairs = load_pairs(args, tokenizer)[0][: args.batch]
    with torch.no_grad():
        batch = PackedPairCollator(pad_token_id(tokenizer))(pairs).to(args.device)
        ours = sequence_logps(response_states(policy, batch)).logps.double().cpu()
        ours_ref = sequence_logps(response_states(reference, batch)).logps.double().cpu()
    b = len(pairs)
    margin = (ours[:b] - ours_ref[:b]) - (ours[b:] - ours_ref[b:])
    ours_loss = torch.nn.functional.softplus(-args.beta * margin).mean().item()

    with tempfile.TemporaryDirectory() as out:
        trainer = make_trl(args, {}, policy, reference, tokenizer, pairs, out, 1)
        trl_batch = trainer.data_collator([trainer.train_dataset[i] for i in range(b)])
        trl_batch = {k: v.to(args.device) for k, v in trl_batch.items()}
        trainer.model.train()
        with torch.no_grad():
            trl_loss = trainer.compute_loss(trainer.model, trl_batch).item()  # TRL's own code path
            labels = trl_batch["input_ids"].masked_fill(trl_batch["completion_mask"] == 0, -100)
            kwargs = {k: v for k, v in trl_batch.items() if k != "completion_mask"}
            # the per-pair log-probs exactly as DPOTrainer._compute_loss forms them
            trl = (
                trainer.model(**kwargs, labels=labels, fused_lm_head=True, use_cache=False)
                .log_probs.sum(1)
                .double()
                .cpu()
            )
        trl_mean_chosen = trainer._metrics["train"]["logps/chosen"][-1]
    rel = ((ours - trl).abs() / trl.abs().clamp(min=1e-6)).max().item()
    result = {
        "loss_ours": ours_loss,
        "loss_trl": trl_loss,
        "logps_max_rel_diff": rel,
        "loss_rel_diff": abs(ours_loss - trl_loss) / abs(trl_loss),
        "trl_metric_vs_recomputed_rel_diff": abs(trl[:b].mean().item() - trl_mean_chosen) / abs(trl_mean_chosen),
        "chosen_logps_ours": ours[:b].tolist(),
        "chosen_logps_trl": trl[:b].tolist(),
    }
    result["ok"] = (
        max(result["logps_max_rel_diff"], result["loss_rel_diff"], result["trl_metric_vs_recomputed_rel_diff"]) <= 1e-4
    )
    return result


# -- the parent: run everything, print and save -----------------------------------------------------------------
def run_child(argv: list[str], role: str, variant: str = "") -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, __file__, *argv, "--role", role, "--variant", variant, "--result", f.name]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if "profile=true" in variant:
            print(proc.stderr[-12000:], file=sys.stderr)
        if proc.returncode != 0:
            return {"variant": variant or role, "error": proc.stderr[-3000:]}
        return json.loads(Path(f.name).read_text())


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else f"{os.cpu_count()} CPU cores"


def report(args, command: str, parity_result: dict, results: list[dict]) -> str:
    base = next((r for r in results if r["variant"] == "trl" and "error" not in r), None)
    trls = [r for r in results if r["variant"].startswith("trl") and "error" not in r]
    # with several TRL variants, also the most demanding comparison: its fastest and its leanest variant
    fastest = max(trls, key=lambda r: r["pairs_per_second"]) if len(trls) > 1 else None
    leanest = min(trls, key=lambda r: r["peak_memory_gib"]) if len(trls) > 1 else None
    lines = [
        f"Command: `{command}`",
        "",
        f"Device: {args.device} ({device_name(args.device)}); "
        f"model {args.model}, {args.dtype}, batch {args.batch}, max_length {args.max_length}, "
        f"{args.warmup} warm-up + {args.steps} timed steps; data: {results[0].get('data', '?')}",
        "",
        f"Parity (fp32, first batch): loss ours {parity_result.get('loss_ours', float('nan')):.6f} vs TRL "
        f"{parity_result.get('loss_trl', float('nan')):.6f}; per-pair log-probs max relative difference "
        f"{parity_result.get('logps_max_rel_diff', float('nan')):.2e}: {'OK' if parity_result.get('ok') else 'FAILED'}",
        "",
        "| variant | s/step | pairs/s | peak memory (GiB) | MFU | pairs/s vs TRL | memory vs TRL |"
        + (" pairs/s vs fastest TRL | memory vs leanest TRL |" if fastest else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if fastest else ""),
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['variant']} | failed: {r['error'].strip().splitlines()[-1][:120]} | | | | | |"
                + (" | |" if fastest else "")
            )
            continue
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
        speed = f"{r['pairs_per_second'] / base['pairs_per_second']:.2f}x" if base else "-"
        mem = f"{r['peak_memory_gib'] / base['peak_memory_gib']:.2f}x" if base else "-"
        extra = (
            (
                f" {r['pairs_per_second'] / fastest['pairs_per_second']:.2f}x ({fastest['variant']}) |"
                f" {r['peak_memory_gib'] / leanest['peak_memory_gib']:.2f}x ({leanest['variant']}) |"
            )
            if fastest
            else ""
        )
        lines.append(
            f"| {r['variant']} | {r['seconds_per_step']:.3f} | {r['pairs_per_second']:.2f} | "
            f"{r['peak_memory_gib']:.2f} | {mfu} | {speed} | {mem} |" + extra
        )
    for r in results:
        if "precompute_ref_seconds" in r:
            lines.append(
                f"\n{r['variant']}: the reference pass over all {r['precompute_ref_pairs']} pairs "
                f"took {r['precompute_ref_seconds']:.2f} s before the timed steps (once per model and data: "
                "cached on disk in train.py)"
            )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--model", choices=["embedded", *SHAPES], help="embedded: the real SmolLM2-135M weights")
    p.add_argument("--batch", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--max-prompt-length", type=int)
    p.add_argument("--steps", type=int, help="timed steps")
    p.add_argument("--warmup", type=int, help="untimed steps first")
    p.add_argument("--device")
    p.add_argument("--dtype", choices=["float32", "bfloat16"])
    p.add_argument(
        "--embedded",
        default="embedded:smollm2-135m-instruct",
        help="the model of --model embedded (or a local HF folder)",
    )
    p.add_argument("--tokenizer", help="tokenizer folder for the random-init shapes (default: the embedded model's)")
    p.add_argument("--data", default=str(HH_TEST), help="an HH-RLHF jsonl(.gz), or 'synthetic'")
    p.add_argument(
        "--variants",
        default="ours;trl",
        help="separated by ';'; options after ':', e.g. 'ours;ours:packing=false,checkpointing=true;trl'",
    )
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100/H200 SXM: 989)")
    p.add_argument("--out", default="bench_results")
    p.add_argument("--role", default="parent", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.data != "synthetic" and not Path(args.data).is_file():
        args.data = "synthetic"

    if args.role != "parent":
        result = parity(args) if args.role == "parity" else child(args)
        Path(args.result).write_text(json.dumps(result))
        return
    argv = sys.argv[1:]
    command = "python bench/throughput.py " + " ".join(argv)
    parity_result = run_child(argv, "parity")
    print("parity:", json.dumps({k: v for k, v in parity_result.items() if not k.startswith("chosen_")}), flush=True)
    results = []
    for variant in args.variants.replace(";", " ").split():
        results.append(run_child(argv, "child", variant))
        print(json.dumps(results[-1]), flush=True)
    text = report(args, command, parity_result, results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"command": command, "parity": parity_result, "results": results}, indent=2)
    )
    (out / "results.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
