"""The host's share of our training step, measured on a CPU: the proxy for a GPU step bound by its launches.

    python bench/host_overhead.py                                  # eager vs host-light, GPU preset's batch
    python bench/host_overhead.py --variants "eager;compile;head;sync_free;light" --out bench/results/host_overhead

On a GPU, a step whose kernels are small is bound by the host: the Python of the step, one launch per dispatched
operator, and every host sync (a `.item()`, a `bool()` of a device tensor) that drains the launch queue. This
benchmark counts those on a CPU, where no GPU is needed: the real DPOModule step (policy forward and backward,
the live reference's forward, the tiled LM head, the loss, the metrics, the non-finite guard, fused AdamW) runs
through Lightning on a model with the GPU preset's depth and vocabulary (`llama1b_narrow`: Llama-3.2-1B's 16
layers and 128,256-entry vocabulary at a width of 32), with the GPU preset's batch of real HH pairs.

Per optimizer step, under torch.profiler (after warm-up steps, which also compile):
- **operators**: `aten::` operators dispatched (each a kernel launch on a GPU, views aside);
- **launching operators**: the same without view and metadata operators (reshape, transpose, slice, ...);
- **host syncs**: `aten::_local_scalar_dense` calls (what `.item()`, `float()` and `bool()` of a tensor run; on a
  GPU each waits for the queue to drain);
- **seconds per step**, wall clock (without the profiler, in a separate timed pass).

Variants (switches of the host-light step, each alone and together):
- `eager`: today's defaults (head in vocabulary tiles of 8,192, no compile, guard and metric checks every step);
- `compile`: `module.compile=true`, regional: the decoder layer compiled once, shared by every layer;
- `head`: `module.head_vocab_chunk_size=auto` as on a GPU: one tile over the whole vocabulary;
- `sync_free`: `module.sync_free=true`: the non-finite guard skips a bad update on the device (the fused
  optimizer's `found_inf`), and the metrics are read only at logging steps (`trainer.log_every_n_steps`);
- `light`: all of them.

Parity: every variant's step losses and first-batch per-pair log-probs are compared with `eager`'s (fp32): they
must agree within 1e-5 (relative). Results: <out>/results.json and results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

VARIANTS = {
    "eager": {},
    "compile": {"compile": True},
    "head": {"head_vocab_chunk_size": "whole"},
    "sync_free": {"sync_free": True},
    "light": {"compile": True, "head_vocab_chunk_size": "whole", "sync_free": True},
}
VIEW_OPS = {
    "aten::view",
    "aten::_unsafe_view",
    "aten::reshape",
    "aten::as_strided",
    "aten::t",
    "aten::transpose",
    "aten::permute",
    "aten::expand",
    "aten::slice",
    "aten::select",
    "aten::unsqueeze",
    "aten::squeeze",
    "aten::flatten",
    "aten::unflatten",
    "aten::split",
    "aten::split_with_sizes",
    "aten::chunk",
    "aten::narrow",
    "aten::detach",
    "aten::detach_",
    "aten::alias",
    "aten::lift_fresh",
    "aten::empty",
    "aten::empty_strided",
    "aten::empty_like",
    "aten::resolve_conj",
    "aten::resolve_neg",
    "aten::result_type",
    "aten::contiguous",
    "aten::numpy_T",
    "aten::view_as",
    "aten::expand_as",
    "aten::unbind",
    "aten::set_",
}
SYNC_OPS = {"aten::_local_scalar_dense"}
COLLATE = "bench::collate"
CPU_ONLY_SYNCS = {"aten::_fused_adamw_", "aten::_fused_adam_"}


def _aten_parents(event) -> list[str]:
    names, parent = [], event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            names.append(parent.name)
        parent = parent.cpu_parent
    return names


def child(args) -> dict:
    import lightning as L
    from torch.utils.data import DataLoader
    from workload import load_pairs

    from dpo_lightning import DPOModule
    from dpo_lightning.core.losses import DPOLoss
    from dpo_lightning.data import PackedPairCollator
    from dpo_lightning.data.tokenize import pad_token_id
    from dpo_lightning.lightning.callbacks import NonFiniteGuard, StepTimer
    from dpo_lightning.models import build_random_llama

    torch.manual_seed(0)
    opts = VARIANTS[args.variant]
    loaded = build_random_llama(args.shape, args.tokenizer, "float32", "cpu")
    policy, tokenizer = loaded.model, loaded.tokenizer
    reference = build_random_llama(args.shape, args.tokenizer, "float32", "cpu").model.eval().requires_grad_(False)
    pairs, source = load_pairs(args, tokenizer)
    collator = PackedPairCollator(pad_token_id(tokenizer))

    def collate(items):  # marked, so that the batches prepared ahead (on the host, CPU tensors) are not counted
        with torch.profiler.record_function(COLLATE):
            return collator(items)

    loader = DataLoader(pairs, batch_size=args.batch, shuffle=False, collate_fn=collate)
    vocab = policy.config.vocab_size
    module = DPOModule(
        policy,
        DPOLoss(beta=0.1),
        optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.0, fused=True),
        reference=reference,
        compute_kl=True,
        compile=opts.get("compile", False),
        head_vocab_chunk_size=vocab if opts.get("head_vocab_chunk_size") == "whole" else 8192,
        sync_free=opts.get("sync_free", False),
    )
    first_logps: list[list[float]] = []
    losses: list[float] = []
    ends: list[float] = []
    counts = {"operators": 0, "nested": 0, "launching": 0, "syncs": 0}
    profiled_steps = args.profile_steps
    from torch.profiler import ProfilerActivity, profile

    profiler = profile(activities=[ProfilerActivity.CPU])

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                with torch.no_grad():
                    states = pl_module.scorer.states(pl_module.policy, batch)
                    p = pl_module.scorer.pairs(states)
                first_logps.append(torch.cat([p.chosen, p.rejected]).double().tolist())
            if batch_idx == args.warmup:
                profiler.__enter__()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(outputs["loss"].detach())  # read after the run: no sync of ours in the profiled steps
            ends.append(time.perf_counter())
            if batch_idx == args.warmup + profiled_steps - 1:
                profiler.__exit__(None, None, None)

    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=args.warmup + args.steps,
        logger=False,
        log_every_n_steps=args.log_every_n_steps,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=1.0,
        callbacks=[Probe(), NonFiniteGuard(), StepTimer()],
    )
    trainer.fit(module, train_dataloaders=loader)
    events = profiler.events()
    collating = [(e.time_range.start, e.time_range.end) for e in events if e.name == COLLATE]
    for event in events:
        if not event.name.startswith("aten::") or any(a <= event.time_range.start <= b for a, b in collating):
            continue
        parents = _aten_parents(event)
        counts["operators"] += not parents  # dispatched from Python (or the autograd engine), not from inside an op
        counts["nested"] += 1
        counts["launching"] += not parents and event.name not in VIEW_OPS
        # a read of a device value; CPU's fused AdamW reads its step counters inside the kernel (CUDA's does not)
        counts["syncs"] += event.name in SYNC_OPS and not any(p in CPU_ONLY_SYNCS for p in parents)
    timed = ends[args.warmup + profiled_steps :]
    start = ends[args.warmup + profiled_steps - 1]
    return {
        "variant": args.variant,
        "operators_per_step": counts["operators"] / profiled_steps,
        "launching_operators_per_step": counts["launching"] / profiled_steps,
        "all_aten_calls_per_step": counts["nested"] / profiled_steps,
        "host_syncs_per_step": counts["syncs"] / profiled_steps,
        "seconds_per_step": (timed[-1] - start) / len(timed),
        "losses": [float(x) for x in losses],
        "first_batch_logps": first_logps[0],
        "data": source,
    }


def run_child(argv: list[str], variant: str) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = [sys.executable, __file__, *argv, "--role", "child", "--variant", variant, "--result", f.name]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"variant": variant, "error": proc.stderr[-3000:]}
        return json.loads(Path(f.name).read_text())


def relative_difference(a: list[float], b: list[float]) -> float:
    x, y = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return ((x - y).abs() / y.abs().clamp(min=1e-6)).max().item()


def report(command: str, args, results: list[dict]) -> str:
    eager = next((r for r in results if r["variant"] == "eager" and "error" not in r), None)
    lines = [
        f"Command: `{command}`",
        "",
        f"Model: random-init `{args.shape}` (fp32, CPU), batch {args.batch} pairs of {results[0].get('data', '?')}, "
        f"max_length {args.max_length}; {args.warmup} warm-up steps, then {args.profile_steps} profiled and "
        f"{args.timed_steps} timed steps per variant, each in its own process.",
        "",
        "| variant | operators / step | launching operators / step | host syncs / step | s/step | operators vs "
        "eager | max rel. diff of losses and log-probs vs eager |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | failed: {r['error'].strip().splitlines()[-1][:100]} | | | | | |")
            continue
        diff = (
            max(
                relative_difference(r["losses"], eager["losses"]),
                relative_difference(r["first_batch_logps"], eager["first_batch_logps"]),
            )
            if eager
            else float("nan")
        )
        r["parity_rel_diff"] = diff
        lines.append(
            f"| {r['variant']} | {r['operators_per_step']:.0f} | {r['launching_operators_per_step']:.0f} | "
            f"{r['host_syncs_per_step']:.1f} | {r['seconds_per_step']:.3f} | "
            f"{r['operators_per_step'] / eager['operators_per_step']:.2f}x | {diff:.1e} |"
            if eager
            else f"| {r['variant']} | {r['operators_per_step']:.0f} | | | | | |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="eager;light", help=f"';'-separated, of {sorted(VARIANTS)}")
    p.add_argument("--shape", default="llama1b_narrow")
    p.add_argument("--tokenizer", default="embedded:smollm2-135m-instruct")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--max-prompt-length", type=int, default=512)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--profile-steps", type=int, default=2)
    p.add_argument("--steps", dest="timed_steps", type=int, default=3, help="timed steps after the profiled ones")
    p.add_argument("--log-every-n-steps", type=int, default=50)
    p.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "hh-rlhf" / "harmless-base" / "test.jsonl.gz")
    )
    p.add_argument("--out", default="bench/results/host_overhead")
    p.add_argument("--role", default="parent", help=argparse.SUPPRESS)
    p.add_argument("--variant", default="", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if not Path(args.data).is_file():
        args.data = "synthetic"
    args.steps = args.profile_steps + args.timed_steps  # with warmup: the batches load_pairs reads
    if args.role == "child":
        Path(args.result).write_text(json.dumps(child(args)))
        return
    argv = sys.argv[1:]
    command = "python bench/host_overhead.py " + " ".join(argv)
    results = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for variant in args.variants.split(";"):
        result = run_child(argv, variant)
        print(json.dumps({k: v for k, v in result.items() if k not in ("losses", "first_batch_logps")}), flush=True)
        results.append(result)
        text = report(command, args, results)
        (out / "results.md").write_text(text + "\n")
        (out / "results.json").write_text(json.dumps({"command": command, "results": results}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
