"""The LM head's log-probabilities of target tokens, tiled, with its own backward (`ChunkedTokenLogps`).

`log_softmax(h W^T + b)[target]` for every row, computed in tiles of rows x vocabulary entries: neither the
`[rows, vocab]` fp32 logits nor a `[vocab, hidden]` fp32 gradient buffer ever exists, only one tile at a time.
`logprobs.token_logps` is its one caller on the training path; `bench/head_memory.py` measures it alone.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

# Tiles: rows (response tokens) x vocabulary entries. One tile's fp32 logits are 128 MB at these sizes.
TOKEN_CHUNK, VOCAB_CHUNK = 4096, 8192
# `head_vocab_chunk_size: auto` on a GPU: tiles of up to this many logits (1 GiB in fp32), so a typical batch's head
# is one or two tiles (a few large kernels) instead of 16 slices of small ones; on a CPU, VOCAB_CHUNK.
GPU_TILE_ELEMENTS = 1 << 28


def check_tile_size(name: str, value: object) -> int | str:
    """A tile size must be an integer >= 1 (`module.head_chunk_size`, `module.head_vocab_chunk_size`); the vocabulary
    tile may also be `auto`."""
    if name == "head_vocab_chunk_size" and value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"module.{name} (the LM head's tile size) must be an integer >= 1, got {value!r}")
    return value


def vocab_tile(setting: int | str, rows: int, vocab: int, device: torch.device) -> int:
    """The vocabulary entries per tile: the setting, or for `auto` the largest tile of at most GPU_TILE_ELEMENTS
    logits on a GPU (the whole vocabulary when it fits), and VOCAB_CHUNK on a CPU."""
    if setting != "auto":
        return int(setting)
    if device.type != "cuda":
        return VOCAB_CHUNK
    return min(vocab, max(VOCAB_CHUNK, GPU_TILE_ELEMENTS // max(1, rows)))


def upcast(x: Tensor) -> Tensor:
    """At least fp32 for log-softmax (bf16/fp16 logits lose the small differences DPO depends on)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _spans(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _in_slice(targets: Tensor, v0: int, v1: int) -> tuple[Tensor, Tensor]:
    """Targets as indices into the vocabulary slice [v0, v1) (clamped), and whether each one falls inside it."""
    local = targets - v0
    return local.clamp(0, v1 - v0 - 1), (local >= 0) & (local < v1 - v0)


@torch.no_grad()
def log_sum_sq_probs(
    hidden: Tensor, weight: Tensor, bias: Tensor | None, chunk_size: int, vocab_chunk_size: int
) -> Tensor:
    """log sum_v softmax(h W^T + b)_v^2 per row = logsumexp(2 z) - 2 logsumexp(z), in the same tiles as the
    log-probs: two running log-sum-exps, no [rows, vocab] tensor (WPO's weights; no gradient)."""
    hidden = hidden.to(weight.dtype)
    acc = torch.promote_types(weight.dtype, torch.float32)
    lse = hidden.new_full(hidden.shape[:1], float("-inf"), dtype=acc)
    lse2 = lse.clone()
    for v0, v1 in _spans(weight.shape[0], vocab_chunk_size):
        w, b = weight[v0:v1], None if bias is None else bias[v0:v1]
        for s0, s1 in _spans(hidden.shape[0], chunk_size):
            logits = upcast(F.linear(hidden[s0:s1], w, b))
            lse[s0:s1] = torch.logaddexp(lse[s0:s1], logits.logsumexp(-1))
            lse2[s0:s1] = torch.logaddexp(lse2[s0:s1], (2 * logits).logsumexp(-1))
    return lse2 - 2 * lse


class ChunkedTokenLogps(torch.autograd.Function):
    """log_softmax(h W^T + b)[target] per row, in tiles of `chunk_size` rows by `vocab_chunk_size` vocabulary entries.

    The forward keeps a running log-sum-exp per row over the vocabulary slices and saves only h, W and that
    log-sum-exp. The backward recomputes each tile's logits (d logp / d logits = onehot(target) - softmax(logits)).
    Each slice of the weight gradient is one matmul over the rows, in W's dtype as autograd would compute it
    (partial products are summed in fp32 only when the rows span several chunks), written straight into the
    gradient: neither a [rows, vocab] logits tensor nor a [vocab, hidden] fp32 buffer ever exists, only one tile.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        chunk_size: int,
        vocab_chunk_size: int,
    ) -> Tensor:
        ctx.hidden_dtype, ctx.chunk_size, ctx.vocab_chunk_size = hidden.dtype, chunk_size, vocab_chunk_size
        hidden = hidden.to(weight.dtype)
        acc = torch.promote_types(weight.dtype, torch.float32)
        lse = hidden.new_full(hidden.shape[:1], float("-inf"), dtype=acc)
        picked = hidden.new_zeros(hidden.shape[:1], dtype=acc)  # the target's logit
        for v0, v1 in _spans(weight.shape[0], vocab_chunk_size):
            w, b = weight[v0:v1], None if bias is None else bias[v0:v1]
            for s0, s1 in _spans(hidden.shape[0], chunk_size):
                logits = upcast(F.linear(hidden[s0:s1], w, b))
                lse[s0:s1] = torch.logaddexp(lse[s0:s1], logits.logsumexp(-1))
                local, inside = _in_slice(targets[s0:s1], v0, v1)
                picked[s0:s1] += logits.gather(-1, local[:, None]).squeeze(-1).where(inside, 0.0)
        ctx.save_for_backward(hidden, weight, bias, targets, lse)
        return picked - lse

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        hidden, weight, bias, targets, lse = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        acc, rows = lse.dtype, _spans(hidden.shape[0], ctx.chunk_size)
        grad_out = grad_out.to(acc)
        grad_h = torch.zeros_like(hidden, dtype=acc) if need_h else None
        new = torch.empty_like if rows else torch.zeros_like  # every slice is written below, unless there are no rows
        grad_w = new(weight) if need_w else None
        grad_b = new(bias) if need_b and bias is not None else None
        for v0, v1 in _spans(weight.shape[0], ctx.vocab_chunk_size):
            w, b = weight[v0:v1], None if bias is None else bias[v0:v1]
            w_sum = b_sum = None
            for s0, s1 in rows:
                g = grad_out[s0:s1]
                grad_logits = (upcast(F.linear(hidden[s0:s1], w, b)) - lse[s0:s1, None]).exp_().mul_(-g[:, None])
                local, inside = _in_slice(targets[s0:s1], v0, v1)
                grad_logits.scatter_add_(-1, local[:, None], g.where(inside, 0.0)[:, None])
                if grad_b is not None:
                    b_sum = grad_logits.sum(0) if b_sum is None else b_sum.add_(grad_logits.sum(0))
                grad_logits = grad_logits.to(weight.dtype)
                if grad_h is not None:
                    grad_h[s0:s1] += grad_logits @ w
                if grad_w is not None:  # this slice's gradient from these rows, in W's dtype (as autograd's)
                    part = grad_logits.t() @ hidden[s0:s1]
                    if len(rows) == 1:
                        w_sum = part
                    else:  # several row chunks: summed in fp32
                        w_sum = part.to(acc) if w_sum is None else w_sum.add_(part)
            if w_sum is not None:
                grad_w[v0:v1] = w_sum
            if b_sum is not None:
                grad_b[v0:v1] = b_sum
        grad_h = grad_h.to(ctx.hidden_dtype) if grad_h is not None else None
        return grad_h, grad_w, grad_b, None, None, None


__all__ = ["ChunkedTokenLogps", "TOKEN_CHUNK", "VOCAB_CHUNK", "check_tile_size", "log_sum_sq_probs", "upcast"]
