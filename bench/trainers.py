"""The two trainers the benchmark times, each on the same model, pairs and batches: ours (Lightning) and TRL's."""

from __future__ import annotations

import resource
import sys
import tempfile
import time

import torch


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


def run_ours(args, opts, policy, load_reference, tokenizer, pairs, info: dict) -> list[float]:
    """Train on `pairs`; the end time of every step. One-off costs outside the steps go into `info`."""
    if opts.get("light") == "true":  # the host-light step (conf/module/fast.yaml)
        opts = {"compile": "true", "head": "auto", "sync_free": "true", **opts}
    import lightning as L
    from torch.utils.data import DataLoader

    from dpo_lightning import DPOModule
    from dpo_lightning.core.losses import DPOLoss
    from dpo_lightning.data import PackedPairCollator, PairCollator
    from dpo_lightning.data.tokenize import pad_token_id

    pad = pad_token_id(tokenizer)
    if opts.get("lora") == "true":  # adapters on every linear layer; the reference is the adapter disabled
        from dpo_lightning.models import wrap_lora

        policy, reference = (
            wrap_lora(policy, r=int(opts.get("r", 16)), alpha=2 * int(opts.get("r", 16)), dropout=0.0),
            None,
        )
    else:
        reference = load_reference()
    packing = opts.get("packing", "true") == "true"
    collator = PackedPairCollator(pad) if packing else PairCollator(pad)
    loader = DataLoader(pairs, batch_size=args.batch, shuffle=False, collate_fn=collator)
    fused = opts.get("optim", "fused") == "fused"  # optim=foreach: the multi-tensor AdamW instead of the fused one
    if opts.get("precompute_ref") == "true":  # reference log-probs once, before the timed loop; the reference is freed
        from dpo_lightning.core import refcache
        from dpo_lightning.core.logprobs import pair_logps, response_states
        from dpo_lightning.core.reference import Precomputed

        def score(batch):
            with torch.no_grad():
                pairs = pair_logps(response_states(reference, batch.to(args.device)))
            return pairs.chosen, pairs.rejected

        start = time.perf_counter()
        reference = Precomputed(None, logps=refcache.load_or_compute(None, score, loader).to(args.device))
        info.update(precompute_ref_seconds=time.perf_counter() - start, precompute_ref_pairs=len(pairs))
    module = DPOModule(
        policy,
        DPOLoss(beta=args.beta),
        optimizer=lambda ps: torch.optim.AdamW(ps, lr=args.lr, weight_decay=0.0, fused=fused),
        reference=reference,
        compute_kl=False,
        activation_checkpointing=opts.get("checkpointing") == "true",
        compile=opts.get("compile") == "true",
        separate_halves=opts.get("separate_halves", "true") == "true",
        head_vocab_chunk_size=_head_tile(opts.get("head", "8192")),
        sync_free=opts.get("sync_free") == "true",
    )
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

    trainer = L.Trainer(
        accelerator="gpu" if args.device.startswith("cuda") else "cpu",
        devices=1,
        precision=opts.get("precision", "32-true"),
        max_steps=len(pairs) // args.batch,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[Timer()],
    )
    trainer.fit(module, train_dataloaders=loader)
    return ends


def _head_tile(value: str) -> int | str:
    """head=auto (the GPU default: one or two large tiles) or a number of vocabulary entries per tile."""
    return value if value == "auto" else int(value)


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
    cfg = DPOConfig(
        output_dir=out,
        per_device_train_batch_size=args.batch,
        max_length=args.max_length,
        learning_rate=args.lr,
        beta=args.beta,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        warmup_steps=0,
        gradient_checkpointing=opts.get("checkpointing") == "true",
        bf16=policy.dtype == torch.bfloat16,
        max_steps=max_steps,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=not args.device.startswith("cuda"),
        disable_tqdm=True,
        optim="adamw_torch_fused" if opts.get("optim", "fused") == "fused" else "adamw_torch",
        dataloader_num_workers=0,
        padding_free=opts.get("padding_free") == "true",
        seed=0,
        # precompute_ref=true: TRL scores the pairs with the untrained policy in its constructor (before
        # the timed steps) and holds no reference model while training
        precompute_ref_log_probs=opts.get("precompute_ref") == "true",
    )
    return trl_trainer_class()(
        model=policy,
        ref_model=reference,
        args=cfg,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )


def run_trl(args, opts, policy, load_reference, tokenizer, pairs, info: dict) -> list[float]:
    from transformers import TrainerCallback

    ends: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, *a, **k):
            sync(args.device)
            ends.append(time.perf_counter())

    # precompute_ref=true: no reference model; TRL scores the pairs with the untrained policy instead
    reference = None if opts.get("precompute_ref") == "true" else load_reference()
    with tempfile.TemporaryDirectory() as out:
        trainer = make_trl(args, opts, policy, reference, tokenizer, pairs, out, len(pairs) // args.batch, [Timer()])
        del reference  # the trainer holds the only handle
        trainer.train()
    return ends
