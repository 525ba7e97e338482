"""Our DPO training step against TRL's DPOTrainer, side by side, in one command.

    python bench/throughput.py                       # CPU: embedded SmolLM2-135M, batch 4, max_length 512, fp32
    python bench/throughput.py --preset gpu          # GPU: 1B Llama shape, bf16, batch 8, max_length 1024

Variant options: ours:packing=false (the textbook layout), checkpointing=true (activation checkpointing; TRL too),
compile=true, precompute_ref=true (reference log-probs computed before the timed steps, reference freed),
lora=true (LoRA r=16 on every linear layer, no reference copy; memory against full fine-tuning),
precision=bf16-mixed, dtype=float32|bfloat16 (weights); trl:padding_free=true.

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
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
HH_TEST = ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz"
PRESETS = {
    "cpu": dict(model="embedded", batch=4, max_length=512, max_prompt_length=256, dtype="float32", device="cpu",
                steps=3, warmup=1),
    "gpu": dict(model="llama1b", batch=8, max_length=1024, max_prompt_length=512, dtype="bfloat16", device="cuda",
                steps=8, warmup=2),
}
SHAPES = {  # random-init shapes (speed only): hidden, layers, heads, kv heads, intermediate, vocab
    "llama1b": (2048, 16, 32, 8, 8192, 128256),
    "smollm2": (576, 30, 9, 3, 1536, 49152),
    "tiny": (64, 2, 4, 2, 128, 49152),
}


# -- the shared workload -----------------------------------------------------------------------------------------
def load_model(args, dtype: torch.dtype):
    from dpo_lightning.models import load_causal_lm

    if args.model == "embedded":
        loaded = load_causal_lm(args.embedded, dtype=str(dtype).split(".")[-1])
        return loaded.model.to(args.device), loaded.tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM

    from dpo_lightning.models.loading import load_tokenizer, resolve_name_or_path

    hidden, layers, heads, kv, inter, vocab = SHAPES[args.model]
    cfg = LlamaConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                      intermediate_size=inter, vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device(args.device):  # random init on the device: seconds instead of a minute on CPU for 1B
        model = LlamaForCausalLM(cfg).to(dtype=dtype)
    return model, load_tokenizer(args.tokenizer or resolve_name_or_path("embedded:smollm2-135m-instruct"))


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
    length = lambda median, cap: int(min(cap, max(2, torch.empty(1).log_normal_(0.0, 0.8, generator=g).item() * median)))  # noqa: E731
    ids = lambda k: torch.randint(10, tokenizer.vocab_size, (k,), generator=g).tolist()  # noqa: E731
    tokens = []
    for _ in range(n):
        p = length(90, args.max_prompt_length)
        tokens.append(TokenizedPair(ids(p), ids(length(28, args.max_length - p)), ids(length(28, args.max_length - p))))
    return tokens, "synthetic (lognormal lengths: median prompt 90, response 28 tokens)"


def textbook_flops(model, pairs) -> float:
    """FLOPs of one DPO step done the textbook way without padding: 8·N·T + attention (see module docstring)."""
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name)
    lengths = [len(p.prompt) + len(r) for p in pairs for r in (p.chosen, p.rejected)]
    attention = sum(4 * cfg.num_hidden_layers * cfg.hidden_size * L * L for L in lengths)  # QK^T and AV, forward
    return 8 * n * sum(lengths) + 4 * attention  # forward (x1 policy, x1 reference) + backward (x2 policy)


# -- one variant per child process -------------------------------------------------------------------------------
def options(variant: str) -> tuple[str, dict[str, str]]:
    name, _, rest = variant.partition(":")
    return name, dict(kv.split("=", 1) for kv in rest.split(",") if kv)


def peak_memory(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_ours(args, opts, policy, reference, tokenizer, pairs) -> list[float]:
    import lightning as L
    from torch.utils.data import DataLoader

    from dpo_lightning import DPOModule
    from dpo_lightning.data import PackedPairCollator, PairCollator
    from dpo_lightning.losses import DPOLoss

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if opts.get("lora") == "true":  # adapters on every linear layer; the reference is the adapter disabled
        from dpo_lightning.models import wrap_lora

        policy, reference = wrap_lora(policy, r=int(opts.get("r", 16)), alpha=2 * int(opts.get("r", 16)), dropout=0.0), None
    packing = opts.get("packing", "true") == "true"
    collator = PackedPairCollator(pad) if packing else PairCollator(pad)
    loader = DataLoader(pairs, batch_size=args.batch, shuffle=False, collate_fn=collator)
    module = DPOModule(policy, DPOLoss(beta=args.beta), optimizer=lambda ps: torch.optim.AdamW(ps, lr=args.lr, weight_decay=0.0, fused=True),
                       reference=reference, compute_kl=False, activation_checkpointing=opts.get("checkpointing") == "true",
                       compile=opts.get("compile") == "true", separate_halves=opts.get("separate_halves", "true") == "true")
    if opts.get("precompute_ref") == "true":  # reference log-probs once, before the timed loop; the reference is freed
        from dpo_lightning import refcache
        from dpo_lightning.logprobs import response_states, sequence_logps

        def score(batch):
            with torch.no_grad():
                seq = sequence_logps(response_states(reference, {k: v.to(args.device) for k, v in batch.items()}))
            half = seq.logps.shape[0] // 2
            return seq.logps[:half], seq.logps[half:]

        start = time.perf_counter()
        module.ref_logps = refcache.load_or_compute(None, score, loader).to(args.device)
        module.reference = reference = None
        print(f"precompute_ref: {time.perf_counter() - start:.2f} s for {len(pairs)} pairs", file=sys.stderr)
    ends: list[float] = []
    profiler = None
    if opts.get("profile") == "true":  # the timed steps under torch.profiler; the top ops go to stderr
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
        profiler = profile(activities=activities)

    class Timer(L.Callback):
        def on_train_batch_end(self, *a, **k):
            sync(args.device)
            ends.append(time.perf_counter())
            if profiler is not None and len(ends) == args.warmup:
                profiler.__enter__()

        def on_train_end(self, *a, **k):
            if profiler is not None:
                profiler.__exit__(None, None, None)
                key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
                print(profiler.key_averages().table(sort_by=key, row_limit=25), file=sys.stderr)
                print(profiler.key_averages().table(sort_by="cpu_time_total", row_limit=15), file=sys.stderr)

    trainer = L.Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                        precision=opts.get("precision", "32-true"), max_steps=len(pairs) // args.batch,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Timer()])
    trainer.fit(module, train_dataloaders=loader)
    return ends


def trl_trainer_class():
    from torch.utils.data import SequentialSampler
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer fed our token ids (so both see the same tokens) in order (so both see the same batches)."""

        def _prepare_dataset(self, dataset, *args, **kwargs):
            return dataset

        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    return PretokenizedDPOTrainer


def make_trl(args, opts, policy, reference, tokenizer, pairs, out: str, max_steps: int, callbacks=()):
    from datasets import Dataset
    from trl import DPOConfig

    rows = [{"prompt_ids": p.prompt, "chosen_ids": p.chosen, "rejected_ids": p.rejected} for p in pairs]
    cfg = DPOConfig(output_dir=out, per_device_train_batch_size=args.batch, max_length=args.max_length,
                    learning_rate=args.lr, beta=args.beta, lr_scheduler_type="constant", weight_decay=0.0,
                    warmup_steps=0, gradient_checkpointing=opts.get("checkpointing") == "true",
                    bf16=policy.dtype == torch.bfloat16, max_steps=max_steps, logging_steps=1, report_to=[],
                    save_strategy="no", use_cpu=not args.device.startswith("cuda"), disable_tqdm=True, optim="adamw_torch_fused",
                    dataloader_num_workers=0, padding_free=opts.get("padding_free") == "true", seed=0)
    return trl_trainer_class()(model=policy, ref_model=reference, args=cfg, train_dataset=Dataset.from_list(rows),
                               processing_class=tokenizer, callbacks=list(callbacks))


def run_trl(args, opts, policy, reference, tokenizer, pairs) -> list[float]:
    from transformers import TrainerCallback

    ends: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *a, **k):
            sync(args.device)
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        make_trl(args, opts, policy, reference, tokenizer, pairs, out, len(pairs) // args.batch, [Timer()]).train()
    return ends


def child(args) -> dict:
    name, opts = options(args.variant)
    dtype = getattr(torch, opts.get("dtype", args.dtype))
    policy, tokenizer = load_model(args, dtype)
    lora = opts.get("lora") == "true"  # LoRA needs no second copy: the reference is the adapter disabled
    reference = None if lora else load_model(args, dtype)[0].eval().requires_grad_(False)
    for model in (policy, reference):
        if model is not None and "attn" in opts:  # attention implementation: sdpa (default) or eager
            model.config._attn_implementation = opts["attn"]
    pairs, source = load_pairs(args, tokenizer)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = peak_memory("cpu")
    ends = (run_ours if name == "ours" else run_trl)(args, opts, policy, reference, tokenizer, pairs)
    seconds = (ends[-1] - ends[args.warmup - 1]) / (len(ends) - args.warmup)
    result = {"variant": args.variant, "seconds_per_step": seconds, "pairs_per_second": args.batch / seconds,
              "peak_memory_gib": peak_memory(args.device), "rss_after_setup_gib": rss_before, "data": source,
              "steps_timed": len(ends) - args.warmup}
    if args.device.startswith("cuda"):
        result["alloc_retries"] = torch.cuda.memory_stats().get("num_alloc_retries", 0)
    if args.device.startswith("cuda"):
        flops = sum(textbook_flops(policy, pairs[i * args.batch:(i + 1) * args.batch])
                    for i in range(args.warmup, len(ends))) / (len(ends) - args.warmup)
        result["mfu"] = flops / seconds / (args.peak_tflops * 1e12)
    return result


# -- parity: the first batch scored both ways in fp32 -----------------------------------------------------------
def parity(args) -> dict:
    from dpo_lightning.data import PackedPairCollator
    from dpo_lightning.logprobs import response_states, sequence_logps

    policy, tokenizer = load_model(args, torch.float32)
    reference = load_model(args, torch.float32)[0].eval()
    with torch.no_grad():  # a reference that differs from the policy, so the step-0 loss is not trivially ln 2
        g = torch.Generator(device=args.device).manual_seed(1)
        for p in reference.parameters():
            p.add_(torch.randn(p.shape, generator=g, device=p.device) * 1e-3 * p.std().clamp(min=1e-3))
    pairs = load_pairs(args, tokenizer)[0][: args.batch]
    with torch.no_grad():
        batch = {k: v.to(args.device) for k, v in PackedPairCollator(tokenizer.pad_token_id or 0)(pairs).items()}
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
            trl = trainer.model(**kwargs, labels=labels, fused_lm_head=True, use_cache=False).log_probs.sum(1).double().cpu()
        trl_mean_chosen = trainer._metrics["train"]["logps/chosen"][-1]
    rel = ((ours - trl).abs() / trl.abs().clamp(min=1e-6)).max().item()
    result = {"loss_ours": ours_loss, "loss_trl": trl_loss, "logps_max_rel_diff": rel,
              "loss_rel_diff": abs(ours_loss - trl_loss) / abs(trl_loss),
              "trl_metric_vs_recomputed_rel_diff": abs(trl[:b].mean().item() - trl_mean_chosen) / abs(trl_mean_chosen),
              "chosen_logps_ours": ours[:b].tolist(), "chosen_logps_trl": trl[:b].tolist()}
    result["ok"] = max(result["logps_max_rel_diff"], result["loss_rel_diff"], result["trl_metric_vs_recomputed_rel_diff"]) <= 1e-4
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


def report(args, command: str, parity_result: dict, results: list[dict]) -> str:
    base = next((r for r in results if r["variant"] == "trl" and "error" not in r), None)
    lines = [f"Command: `{command}`", "",
             f"Device: {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else f'{os.cpu_count()} CPU cores'}); "
             f"model {args.model}, {args.dtype}, batch {args.batch}, max_length {args.max_length}, "
             f"{args.warmup} warm-up + {args.steps} timed steps; data: {results[0].get('data', '?')}", "",
             f"Parity (fp32, first batch): loss ours {parity_result.get('loss_ours', float('nan')):.6f} vs TRL "
             f"{parity_result.get('loss_trl', float('nan')):.6f}; per-pair log-probs max relative difference "
             f"{parity_result.get('logps_max_rel_diff', float('nan')):.2e}: {'OK' if parity_result.get('ok') else 'FAILED'}", "",
             "| variant | s/step | pairs/s | peak memory (GiB) | MFU | pairs/s vs TRL | memory vs TRL |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'].strip().splitlines()[-1][:120]} | | | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"
        speed = f"{r['pairs_per_second'] / base['pairs_per_second']:.2f}x" if base else "-"
        mem = f"{r['peak_memory_gib'] / base['peak_memory_gib']:.2f}x" if base else "-"
        lines.append(f"| {r['variant']} | {r['seconds_per_step']:.3f} | {r['pairs_per_second']:.2f} | "
                     f"{r['peak_memory_gib']:.2f} | {mfu} | {speed} | {mem} |")
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
    p.add_argument("--embedded", default="embedded:smollm2-135m-instruct", help="the model of --model embedded (or a local HF folder)")
    p.add_argument("--tokenizer", help="tokenizer folder for the random-init shapes (default: the embedded model's)")
    p.add_argument("--data", default=str(HH_TEST), help="an HH-RLHF jsonl(.gz), or 'synthetic'")
    p.add_argument("--variants", default="ours;trl", help="separated by ';'; options after ':', e.g. 'ours;ours:packing=false,checkpointing=true;trl'")
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
    argv = [a for a in sys.argv[1:]]
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
    (out / "results.json").write_text(json.dumps({"command": command, "parity": parity_result, "results": results}, indent=2))
    (out / "results.md").write_text(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
