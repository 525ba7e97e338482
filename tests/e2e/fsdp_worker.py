"""Two gloo processes on the CPU: DPOModule under PyTorch FSDP (FULL_SHARD, each decoder layer a unit, the rest in
the root unit), run inside the root's forward as Lightning's FSDPStrategy runs training_step. Writes one JSON file
per rank (rank<r>.json in the folder given). Mode `step`: the loss, and the largest difference of every gathered
gradient from one unsharded process. Mode `precompute`: the precomputed reference's pass over 3 batches (2 on rank
0, 1 on rank 1: rank 1 repeats a call in lockstep), sharded, against the unsharded reference's log-probs. Mode
`generate`: greedy answers of the sharded policy and reference outside a training step, as the sample-generations
callback makes them under trainer=fsdp (every rank, in lockstep, the root's weights gathered), against unsharded."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest's tiny model
from conftest import tiny_llama  # noqa: E402


def worker(rank: int, world: int, port: str, tied: bool, out: str, mode: str = "step") -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from dpo_lightning import DPOModule
    from dpo_lightning.core.losses import DPOLoss
    from dpo_lightning.data import PackedPairCollator, TokenizedPair
    from dpo_lightning.lightning.strategies import decoder_layers

    model = tiny_llama(hidden=32, tie=tied, dtype="float32")
    reference = copy.deepcopy(model)
    pristine = copy.deepcopy(model)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    g = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(3, 97, (n,), generator=g).tolist()

    batch = PackedPairCollator(0)([TokenizedPair(ids(5), ids(4), ids(7)), TokenizedPair(ids(9), ids(2), ids(3))])

    def dpo_module(policy, ref):
        return DPOModule(policy, DPOLoss(0.1), optimizer=torch.optim.AdamW, reference=ref, compute_kl=False)

    whole = dpo_module(copy.deepcopy(model), copy.deepcopy(reference))
    expected = whole(batch)[0].losses.mean()
    expected.backward()

    if mode == "precompute":
        precompute(rank, model, reference, ids, out, pristine)
        return
    if mode == "generate":
        generation(rank, model, reference, ids, out)
        return
    module = dpo_module(model, reference)
    assert module.scorer.fused_head

    class Step(torch.nn.Module):  # what Lightning's forward redirection does: training_step as the root's forward
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, b):
            return self.m(b)[0].losses.mean()

    sharded = FSDP(
        Step(module),
        auto_wrap_policy=ModuleWrapPolicy(decoder_layers()),
        device_id=torch.device("cpu"),
        use_orig_params=True,
        sharding_strategy=ShardingStrategy.FULL_SHARD,
    )
    head_local = module.policy.get_output_embeddings().weight.numel()  # this rank's shard, outside the forward
    loss = sharded(batch)
    loss.backward()
    diffs = {}
    with FSDP.summon_full_params(sharded, with_grads=True):
        for (name, p), q in zip(module.policy.named_parameters(), whole.policy.parameters()):
            diffs[name] = float("inf") if p.grad is None else (p.grad - q.grad).abs().max().item()
    head_full = whole.policy.get_output_embeddings().weight.numel()
    result = {
        "rank": rank,
        "loss": loss.item(),
        "expected": expected.item(),
        "max_grad_diff": max(diffs.values()),
        "head_elements_here": head_local,
        "head_elements": head_full,
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))  # one file per rank: their prints would interleave
    finish()


def sharded(module, mixed_precision=None):
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from dpo_lightning.lightning.strategies import decoder_layers

    class Root(torch.nn.Module):  # Lightning's FSDP root: the LightningModule, whose forward is redirected
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, b):
            return self.m(b)

    return FSDP(
        Root(module),
        auto_wrap_policy=ModuleWrapPolicy(decoder_layers()),
        device_id=torch.device("cpu"),
        use_orig_params=True,
        sharding_strategy=ShardingStrategy.FULL_SHARD,
        mixed_precision=mixed_precision,
    )


def precompute(rank: int, model, reference, ids, out: str, pristine) -> None:
    from dpo_lightning import DPOModule
    from dpo_lightning.core import refcache
    from dpo_lightning.core.losses import DPOLoss
    from dpo_lightning.data import PackedPairCollator, TokenizedPair
    from dpo_lightning.lightning.precompute import batch_scorer

    batches = [
        PackedPairCollator(0)([TokenizedPair(ids(3 + i), ids(2 + i), ids(4 + 2 * i)) for i in range(k, k + 2)])
        for k in (0, 2, 4)
    ]
    module = DPOModule(model, DPOLoss(0.1), optimizer=torch.optim.AdamW, reference=reference, precompute_ref=True)
    key = refcache.fingerprint(reference)  # what DPOModule.setup takes, before the weights are sharded
    whole_elements = sum(p.numel() for p in reference.parameters())
    reference_copy = copy.deepcopy(reference)
    whole = batch_scorer(module)  # the unsharded pass, for comparison
    expected = refcache.compute(whole, batches, refcache.ReferenceLogps.empty())  # one process: every batch
    root = sharded(module)
    local = sum(p.numel() for p in reference.parameters())  # this rank's shard of the reference
    calls = []
    score = batch_scorer(module, root)
    counted = lambda b: calls.append(b.n_pairs) or score(b)  # noqa: E731
    got = refcache.compute(counted, batches, refcache.ReferenceLogps.empty(), rank, 2, lockstep=True)
    keys = expected.keys
    diff = max((a - b).abs().max().item() for a, b in zip(got.lookup(keys), expected.lookup(keys)))
    result = {"rank": rank, "calls": len(calls), "pairs": len(got), "max_diff": diff, "key": key}
    result["reference_elements_here"], result["reference_elements"] = local, whole_elements
    # FSDP's bf16 mixed precision (as trainer.precision=bf16-mixed gives it): the root unit casts the inputs and the
    # weights it holds; outside the root the reference's bf16 layers would meet fp32 inputs and fail.
    from torch.distributed.fsdp import MixedPrecision

    mixed = DPOModule(
        pristine,
        DPOLoss(0.1),
        optimizer=torch.optim.AdamW,
        reference=copy.deepcopy(reference_copy),
        precompute_ref=True,
    )
    bf16 = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.float32)
    root = sharded(mixed, bf16)
    try:  # the pass outside the root unit: what failed on the GPU
        batch_scorer(mixed)(batches[0])
        result["outside_root"] = "ran"
    except RuntimeError as error:
        result["outside_root"] = str(error)[:200]
    got = refcache.compute(batch_scorer(mixed, root), batches, refcache.ReferenceLogps.empty(), rank, 2, lockstep=True)
    result["bf16_max_rel_diff"] = max(
        ((a - b).abs() / b.abs()).max().item() for a, b in zip(got.lookup(keys), expected.lookup(keys))
    )
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finish()


def generation(rank: int, model, reference, ids, out: str) -> None:
    from types import SimpleNamespace

    from dpo_lightning import DPOModule
    from dpo_lightning.core.generation import generate
    from dpo_lightning.core.losses import DPOLoss
    from dpo_lightning.lightning.strategies import LinkSafeFSDPStrategy, gathered_root

    tokenizer = SimpleNamespace(pad_token_id=0, eos_token_id=96, decode=lambda row, **kw: " ".join(map(str, row)))
    prompts = [ids(4), ids(7), ids(5)]

    def answers(policy, ref, synced):  # the policy's and the reference's, as SampleGenerations asks for them
        kw = dict(max_new_tokens=8, do_sample=False, synced=synced, batch_size=2)
        return [generate(m, tokenizer, prompts, **kw).texts for m in (policy, ref)]

    expected = answers(copy.deepcopy(model), copy.deepcopy(reference), False)
    pristine = copy.deepcopy(model), copy.deepcopy(reference)  # for the bf16 run below, before sharding
    module = DPOModule(model, DPOLoss(0.1), optimizer=torch.optim.AdamW, reference=reference, compute_kl=False)
    strategy = LinkSafeFSDPStrategy()
    strategy.model = sharded(module)
    result = {"rank": rank}
    try:  # without gathering the root: its flat-sharded embeddings cannot run
        with module.reference.run() as ref:
            answers(module.policy, ref, False)
        result["ungathered"] = "ran"
    except RuntimeError as error:
        result["ungathered"] = str(error)[:200]
    with gathered_root(SimpleNamespace(strategy=strategy)) as gathered, module.reference.run() as ref:
        result["gathered"] = gathered
        result["same"] = answers(module.policy, ref, gathered) == expected
    # trainer.precision=bf16-mixed: the layers gather their weights in bf16 and take the root's fp32 embeddings
    # uncast; outside autocast the first layer fails ("expected ... same dtype")
    from torch.distributed.fsdp import MixedPrecision

    mixed = DPOModule(pristine[0], DPOLoss(0.1), optimizer=torch.optim.AdamW, reference=pristine[1], compute_kl=False)
    strategy.model = sharded(mixed, MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32))
    try:
        with gathered_root(SimpleNamespace(strategy=strategy)), mixed.reference.run() as ref:
            result["bf16"] = answers(mixed.policy, ref, True)
    except RuntimeError as error:
        result["bf16"] = str(error)[:200]
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finish()


def finish() -> None:
    """Both ranks done before either tears the group down: a rank that destroys it while its peer still talks to it
    can abort the peer ("terminate called without an active exception", SIGABRT; seen once in CI). Then leave at
    once: the interpreter's own teardown can still abort rank 0 the same way, after both ranks wrote their results
    (seen again in a CI rehearsal, rank0.json and rank1.json written), and what is tested is in those files."""
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    port, head, out = sys.argv[1:4]  # a free port, tied|untied, the folder for the results
    mode = sys.argv[4] if len(sys.argv) > 4 else "step"
    torch.multiprocessing.spawn(worker, args=(2, port, head == "tied", out, mode), nprocs=2)
