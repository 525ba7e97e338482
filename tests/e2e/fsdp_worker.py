"""Two gloo processes on the CPU: DPOModule's step under PyTorch FSDP (FULL_SHARD, each decoder layer a unit, the
rest in the root unit), run inside the root's forward as Lightning's FSDPStrategy runs training_step. Writes one
JSON file per rank (rank<r>.json in the folder given): the loss, and the largest difference of every gathered
gradient from one unsharded process."""

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


def worker(rank: int, world: int, port: str, tied: bool, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import ShardingStrategy
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    from dpo_lightning import DPOModule
    from dpo_lightning.data import PackedPairCollator, TokenizedPair
    from dpo_lightning.losses import DPOLoss
    from dpo_lightning.strategies import decoder_layers

    model = tiny_llama(hidden=32, tie=tied, dtype="float32")
    reference = copy.deepcopy(model)
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
    dist.destroy_process_group()


if __name__ == "__main__":
    port, head, out = sys.argv[1:4]  # a free port, tied|untied, the folder for the results
    torch.multiprocessing.spawn(worker, args=(2, port, head == "tied", out), nprocs=2)
