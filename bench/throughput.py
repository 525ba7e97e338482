"""Our DPO training step against TRL's DPOTrainer, side by side, in one command.

    python bench/throughput.py                       # CPU: embedded SmolLM2-135M, batch 4, max_length 512, fp32
    python bench/throughput.py --preset gpu          # GPU: 1B Llama shape, bf16, batch 8, max_length 1024

Variant options: ours:packing=false (the textbook layout), checkpointing=true (activation checkpointing; TRL too),
compile=true (each decoder layer, compiled once), head=auto|<n> (the LM head's vocabulary tile: auto is one or two
large tiles on a GPU; default 8192), sync_free=true (no host sync in the step), light=true (compile, head=auto and
sync_free together: `module=fast`), precompute_ref=true (reference log-probs computed before the timed steps,
reference freed),
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

Every variant runs in --rounds child processes, interleaved (A B C A B C ...), after an untimed warm round that
fills every kernel and compile cache; the table gives each variant's median seconds per step with its min and max,
the ratios of medians, and names every variant whose spread exceeds 10% (`rounds.py`). Results are rewritten after
every child, so a run cut short keeps what it measured.

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
import time
from pathlib import Path

import torch
from rounds import WIDE_SPREAD, run_rounds, summarize
from trainers import make_trl, options, peak_memory, run_ours, run_trl
from workload import HH_TEST, PRESETS, SHAPES, load_model, load_pairs, textbook_flops


def child(args) -> dict:
    name, opts = options(args.variant)
    dtype = getattr(torch, opts.get("dtype", args.dtype))
    policy, tokenizer = load_model(args, dtype)
    if "attn" in opts:  # attention implementation: sdpa (default), eager or flex_attention (GPU)
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
        result.update(flops_per_step=flops, mfu=flops / seconds / (args.peak_tflops * 1e12))
    return result


# -- parity: the first batch scored both ways in fp32 -----------------------------------------------------------
def parity(args) -> dict:
    from dpo_lightning.core.logprobs import response_states, sequence_logps
    from dpo_lightning.data import PackedPairCollator
    from dpo_lightning.data.tokenize import pad_token_id

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
def run_child(argv: list[str], role: str, variant: str = "", profile_to: Path | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, __file__, *argv, "--role", role, "--variant", variant, "--result", f.name]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = {"child_seconds": time.perf_counter() - start}  # the whole child: start, build, data, steps
        if "profile=true" in variant and profile_to is not None:
            profile_to.write_text(f"{variant}\n{proc.stderr[-20000:]}")
        if proc.returncode != 0:
            return {"variant": variant or role, "error": proc.stderr[-3000:], **wall}
        return {**json.loads(Path(f.name).read_text()), **wall}


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device.startswith("cuda") else f"{os.cpu_count()} CPU cores"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x"


def report(args, command: str, parity_result: dict, results: list[dict]) -> str:
    ok = [r for r in results if "error" not in r]
    base = next((r for r in ok if r["variant"] == "trl"), None)
    trls = [r for r in ok if r["variant"].startswith("trl")]
    # with several TRL variants, also the most demanding comparison: its fastest and its leanest variant
    fastest = max(trls, key=lambda r: r["pairs_per_second"]) if len(trls) > 1 else None
    leanest = min(trls, key=lambda r: r["peak_memory_gib"]) if len(trls) > 1 else None
    rounds = max((len(r["rounds"]) for r in ok), default=0)
    if parity_result.get("skipped"):
        parity = "Parity: skipped (--no-parity)"
    else:
        get = lambda key: parity_result.get(key, float("nan"))  # noqa: E731
        parity = (
            f"Parity (fp32, first batch): loss ours {get('loss_ours'):.6f} vs TRL {get('loss_trl'):.6f}; per-pair "
            f"log-probs max relative difference {get('logps_max_rel_diff'):.2e}: "
            f"{'OK' if parity_result.get('ok') else 'FAILED'}"
        )
    header = (
        "| variant | s/step, median [min-max] | pairs/s | peak memory (GiB) | MFU | pairs/s vs TRL | memory vs TRL |"
    )
    lines = [
        f"Command: `{command}`",
        "",
        f"Device: {args.device} ({device_name(args.device)}); model {args.model}, {args.dtype}, batch {args.batch}, "
        f"max_length {args.max_length}, {args.warmup} warm-up + {args.steps} timed steps per child; "
        f"{rounds} timed round(s) per variant, interleaved"
        f"{', after an untimed warm round' if not args.no_warm_round else ''}; data: {ok[0]['data'] if ok else '?'}",
        "",
        parity,
        "",
        header + (" pairs/s vs fastest TRL | memory vs leanest TRL |" if fastest else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if fastest else ""),
    ]
    for r in results:
        if "error" in r:
            lines.append(
                f"| {r['variant']} | failed: {r['error'].strip().splitlines()[-1][:120]} | | | | | |"
                + (" | |" if fastest else "")
            )
            continue
        cells = [
            r["variant"],
            f"{r['seconds_per_step']:.3f} [{r['seconds_min']:.3f}-{r['seconds_max']:.3f}]",
            f"{r['pairs_per_second']:.2f}",
            f"{r['peak_memory_gib']:.2f}",
            f"{r['mfu']:.1%}" if "mfu" in r else "-",
            _ratio(r["pairs_per_second"], base["pairs_per_second"]) if base else "-",
            _ratio(r["peak_memory_gib"], base["peak_memory_gib"]) if base else "-",
        ]
        if fastest:
            cells += [
                f"{_ratio(r['pairs_per_second'], fastest['pairs_per_second'])} ({fastest['variant']})",
                f"{_ratio(r['peak_memory_gib'], leanest['peak_memory_gib'])} ({leanest['variant']})",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    wide = [f"{r['variant']} ({r['spread']:.0%})" for r in ok if r["spread"] > WIDE_SPREAD]
    lines += [
        "",
        f"Spread over {WIDE_SPREAD:.0%} of the median (max - min): {', '.join(wide)}"
        if wide
        else f"Every variant's spread is within {WIDE_SPREAD:.0%} of its median.",
    ]
    for r in ok:
        if "precompute_ref_seconds" in r:
            lines.append(
                f"\n{r['variant']}: the reference pass over all {r['precompute_ref_pairs']} pairs took "
                f"{r['precompute_ref_seconds']:.2f} s before the timed steps (once per model and data: "
                "cached on disk in train.py)"
            )
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    if args.role != "parent":
        result = parity(args) if args.role == "parity" else child(args)
        Path(args.result).write_text(json.dumps(result))
        return
    argv = sys.argv[1:]
    command = "python bench/throughput.py " + " ".join(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = json.loads((out / "results.json").read_text()) if args.resume and (out / "results.json").is_file() else {}
    if saved:  # --resume: more rounds after those saved (same machine, caches still warm): no parity, no warm round
        parity_result, args.no_warm_round = saved["parity"], True
    else:
        parity_result = {"skipped": True} if args.no_parity else run_child(argv, "parity")
    print("parity:", json.dumps({k: v for k, v in parity_result.items() if not k.startswith("chosen_")}), flush=True)
    variants = args.variants.replace(";", " ").split()
    profiled = variants[0] if args.profile else None

    def warm_variant(v: str) -> str:  # --profile: the first variant's warm-round child runs under torch.profiler
        return v + (("," if ":" in v else ":") + "profile=true" if v == profiled else "")

    def save(variant: str, index: int, result: dict) -> None:
        print(f"{'warm' if index < 0 else f'round {index + 1}'}:", json.dumps(result), flush=True)
        if index >= 0:  # the warm round is printed, not kept
            done.setdefault(variant, []).append(result)
        rows = [summarize(v, done.get(v, []), args.batch, args.peak_tflops) for v in variants if done.get(v)]
        (out / "results.json").write_text(
            json.dumps({"command": command, "parity": parity_result, "results": rows, "runs": done}, indent=2)
        )
        (out / "results.md").write_text(report(args, command, parity_result, rows) + "\n")

    done: dict[str, list[dict]] = {v: list(saved.get("runs", {}).get(v, [])) for v in variants if saved}
    run_rounds(
        variants,
        lambda v: run_child(argv, "child", v, out / "profile.txt"),
        args.rounds,
        max(args.rounds, args.max_rounds or 0),
        warm=not args.no_warm_round,
        warm_variant=warm_variant,
        on_result=save,
        earlier=done,
    )
    print("\n" + (out / "results.md").read_text())


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--model", choices=["embedded", *SHAPES], help="embedded: the real SmolLM2-135M weights")
    p.add_argument("--batch", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--max-prompt-length", type=int)
    p.add_argument("--steps", type=int, help="timed steps per child")
    p.add_argument("--warmup", type=int, help="untimed steps first, in every child")
    p.add_argument("--rounds", type=int, help="timed rounds of every variant, interleaved; the median is reported")
    p.add_argument("--max-rounds", type=int, help="more rounds, up to this many, while a spread exceeds 10%%")
    p.add_argument("--no-warm-round", action="store_true", help="skip the untimed round that fills the caches")
    p.add_argument("--no-parity", action="store_true", help="skip the fp32 parity check (e.g. for an 8B shape)")
    p.add_argument("--resume", action="store_true", help="continue the rounds saved in <out>/results.json")
    p.add_argument(
        "--profile",
        action="store_true",
        help="the first variant's warm round under torch.profiler: <out>/profile.txt (top kernels by self device time)",
    )
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
    return args


if __name__ == "__main__":
    main()
