"""Batch -> per-sequence summed log-probabilities of the response tokens: the one hot path of training.

The transformer backbone runs once over the batch; the LM head then runs only on the positions that predict a
response token, in tiles (rows x vocabulary slices), through a custom autograd function that recomputes each
tile's logits in backward. So the `[tokens, vocab]` fp32 logits of the whole batch are never materialised. Models whose head is not a plain
linear layer (soft-capped or scaled logits, adapters on the head) take the plain path: full logits, then gather.
`plain_sequence_logps` is that plain path for any model and is the reference the fast path is tested against.

Batches come in two layouts (see `data.collate`): the textbook one (chosen rows, then rejected rows) and the packed
one (prompt, chosen, rejected as one segment, the prompt computed once, several pairs per row), which runs under a
4D attention mask. Both give the same `ResponseStates`: rows 0..B-1 chosen, B..2B-1 rejected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from .data.collate import CHOSEN, REJECTED, is_packed, pair_count
from .losses.base import PairLogps

# Model families whose logits are exactly lm_head(final hidden state), with no scaling or soft-capping.
PLAIN_HEAD_MODEL_TYPES = {"llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "gpt2", "gpt_neox", "phi3", "olmo", "olmo2", "smollm3"}


@dataclass
class ResponseStates:
    """Inputs of the LM head at the positions that predict response tokens (flattened over the batch)."""

    hidden: Tensor  # [N, H] hidden states, or [N, V] logits when head is None (plain path)
    head: nn.Linear | None
    targets: Tensor  # [N] the response token ids
    rows: Tensor  # [N] the batch row each position belongs to
    n_rows: int


@dataclass
class SequenceLogps:
    logps: Tensor  # [rows] summed log-probs of the response tokens
    tokens: Tensor  # [rows] number of response tokens


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (adapters stay injected in its layers)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def has_plain_head(model: nn.Module) -> bool:
    inner = unwrap(model)
    head = inner.get_output_embeddings()
    return type(head) is nn.Linear and getattr(inner.config, "model_type", None) in PLAIN_HEAD_MODEL_TYPES


def response_states(model: nn.Module, batch: dict[str, Tensor], fused_head: bool = True,
                    separate_halves: bool = False) -> ResponseStates:
    """Run the model's backbone (or the whole model on the plain path) and keep the response positions.

    With `separate_halves`, the chosen rows and the rejected rows run as two forwards, each trimmed to its own
    longest sequence: less padding, and smaller activations (measured ~30% faster on CPU); results are identical.
    Both layouts run under the SDPA kernels of `SDPA_BACKENDS` (and `DPOModule.backward` under the same, so that
    activation checkpointing recomputes each layer with the kernel its forward used).
    """
    with sdpa_kernel(SDPA_BACKENDS):
        if is_packed(batch):
            return _packed_states(model, batch, fused_head)
        return _textbook_states(model, batch, fused_head, separate_halves)


def _textbook_states(model: nn.Module, batch: dict[str, Tensor], fused_head: bool, separate_halves: bool) -> ResponseStates:
    n_rows = batch["input_ids"].shape[0]
    groups = [(0, n_rows // 2), (n_rows // 2, n_rows)] if separate_halves and n_rows > 1 else [(0, n_rows)]
    parts = [_group_states(model, _trimmed(batch, start, stop), fused_head, start) for start, stop in groups]
    if len(parts) == 1:
        states = parts[0]
    else:
        states = ResponseStates(torch.cat([p.hidden for p in parts]), parts[0].head,
                                torch.cat([p.targets for p in parts]), torch.cat([p.rows for p in parts]), 0)
    states.n_rows = n_rows
    return states


def _trimmed(batch: dict[str, Tensor], start: int, stop: int) -> dict[str, Tensor]:
    width = int(batch["attention_mask"][start:stop].sum(-1).max())  # rows are right-padded
    return {k: batch[k][start:stop, :width] for k in ("input_ids", "attention_mask", "response_mask")}


def _group_states(model: nn.Module, batch: dict[str, Tensor], fused_head: bool, row_offset: int) -> ResponseStates:
    mask = batch["response_mask"][:, 1:]
    targets = batch["input_ids"][:, 1:][mask]
    rows = row_offset + torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    return _states_at(model, inputs, lambda x: x[:, :-1][mask], fused_head, targets, rows, mask.shape[0])


def _states_at(model: nn.Module, inputs: dict[str, Tensor], select: Callable[[Tensor], Tensor], fused_head: bool,
               targets: Tensor, rows: Tensor, n_rows: int) -> ResponseStates:
    """One forward; keep `select(...)` of its per-position outputs: the final hidden states on the fused path
    (the LM head runs later, tiled), else the model's own logits."""
    inner = unwrap(model)
    if fused_head and has_plain_head(model):
        hidden = inner.base_model(**inputs, use_cache=False).last_hidden_state
        return ResponseStates(select(hidden), inner.get_output_embeddings(), targets, rows, n_rows)
    return ResponseStates(select(model(**inputs, use_cache=False).logits), None, targets, rows, n_rows)


# Attention implementations that take an arbitrary 4D mask (the packed layout needs one).
MASKED_ATTENTION = {"sdpa", "eager"}
# SDPA kernels for both layouts' masks. Not cuDNN: on an H100 (torch 2.11) it builds a new cuDNN graph for every
# new sequence length, ~27 ms of CPU per attention call, which made a 1B step 5x slower (measured, profiler).
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
# LM-head tiles: rows (response tokens) x vocabulary entries. One tile's fp32 logits are 128 MB at these sizes.
TOKEN_CHUNK, VOCAB_CHUNK = 4096, 8192
KL_ELEMENTS = 1 << 23  # elements of one fp32 temporary in token_kl (32 MB)


def packed_attention_mask(batch: dict[str, Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """[rows, 1, W, W] mask of the packed layout: token i sees token j iff both belong to the same pair, j <= i,
    and not (i rejected and j chosen). Padding (segment -1) sees only padding, so no row is fully masked.
    Boolean (True = attend) when `dtype` is None, else additive (0 or the dtype's minimum)."""
    seg, branch = batch["segment_ids"], batch["branch_ids"]
    pos = torch.arange(seg.shape[1], device=seg.device)
    allowed = (seg[:, :, None] == seg[:, None, :]) & (pos[None, None, :] <= pos[None, :, None])
    allowed &= ~((branch[:, :, None] == REJECTED) & (branch[:, None, :] == CHOSEN))
    allowed = allowed[:, None]
    if dtype is None:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=seg.device).masked_fill_(~allowed, torch.finfo(dtype).min)


def _packed_states(model: nn.Module, batch: dict[str, Tensor], fused_head: bool) -> ResponseStates:
    inner = unwrap(model)
    attn = getattr(inner.config, "_attn_implementation", "eager")
    if attn not in MASKED_ATTENTION:
        raise ValueError(f"packed batches need an attention implementation that takes a 4D mask ({sorted(MASKED_ATTENTION)}), "
                         f"the model uses {attn!r}: set data.packing=false or model.attn_implementation=sdpa")
    inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"],
              "attention_mask": packed_attention_mask(batch, None if attn == "sdpa" else inner.dtype)}
    return _states_at(model, inputs, lambda x: x.flatten(0, 1)[batch["predict_index"]], fused_head,
                      batch["targets"], batch["target_rows"], 2 * pair_count(batch))


def upcast(x: Tensor) -> Tensor:
    """At least fp32 for log-softmax (bf16/fp16 logits lose the small differences DPO depends on)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def token_logps(states: ResponseStates, chunk_size: int = TOKEN_CHUNK, vocab_chunk_size: int = VOCAB_CHUNK) -> Tensor:
    """log p(target) at every response position, [N], in at least fp32."""
    if states.head is None:
        return upcast(states.hidden).log_softmax(-1).gather(-1, states.targets[:, None]).squeeze(-1)
    return ChunkedTokenLogps.apply(states.hidden, states.head.weight, states.head.bias, states.targets, chunk_size,
                                   vocab_chunk_size)


def sequence_logps(states: ResponseStates, chunk_size: int = TOKEN_CHUNK,
                   vocab_chunk_size: int = VOCAB_CHUNK) -> SequenceLogps:
    per_token = token_logps(states, chunk_size, vocab_chunk_size)
    return SequenceLogps(_per_row(per_token, states), _per_row(torch.ones_like(per_token), states))


def pair_logps(states: ResponseStates, chunk_size: int = TOKEN_CHUNK, vocab_chunk_size: int = VOCAB_CHUNK) -> PairLogps:
    """Per-pair summed log-probs and token counts: rows 0..B-1 are the chosen responses, B..2B-1 the rejected."""
    seq = sequence_logps(states, chunk_size, vocab_chunk_size)
    half = states.n_rows // 2
    return PairLogps(seq.logps[:half], seq.logps[half:], seq.tokens[:half], seq.tokens[half:])


def _per_row(values: Tensor, states: ResponseStates) -> Tensor:
    return torch.zeros(states.n_rows, dtype=values.dtype, device=values.device).index_add(0, states.rows, values)


@torch.no_grad()
def token_kl(policy: ResponseStates, reference: ResponseStates, chunk_size: int = TOKEN_CHUNK) -> Tensor:
    """Exact KL(pi(.|context) || pi_ref(.|context)) over the vocabulary at each response position, [N].

    Full-vocabulary rows are needed here, so the rows go `KL_ELEMENTS // vocab` at a time (e.g. 65 rows of a 128k
    vocabulary), which keeps each fp32 temporary near 32 MB."""
    vocab = policy.head.weight.shape[0] if policy.head is not None else policy.hidden.shape[-1]
    rows = max(1, min(chunk_size, KL_ELEMENTS // vocab))
    out = []
    for start in range(0, policy.targets.numel(), rows):
        logp = _logits(policy, start, rows).log_softmax(-1)
        logq = _logits(reference, start, rows).log_softmax(-1)
        out.append((logp.exp() * (logp - logq)).sum(-1))
    return torch.cat(out) if out else policy.targets.new_zeros(0, dtype=torch.float32)


def _logits(states: ResponseStates, start: int, size: int) -> Tensor:
    hidden = states.hidden[start: start + size]
    if states.head is None:
        return upcast(hidden)
    return upcast(F.linear(hidden.to(states.head.weight.dtype), states.head.weight, states.head.bias))


def _spans(n: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def _in_slice(targets: Tensor, v0: int, v1: int) -> tuple[Tensor, Tensor]:
    """Targets as indices into the vocabulary slice [v0, v1) (clamped), and whether each one falls inside it."""
    local = targets - v0
    return local.clamp(0, v1 - v0 - 1), (local >= 0) & (local < v1 - v0)


class ChunkedTokenLogps(torch.autograd.Function):
    """log_softmax(h W^T + b)[target] per row, in tiles of `chunk_size` rows by `vocab_chunk_size` vocabulary entries.

    The forward keeps a running log-sum-exp per row over the vocabulary slices and saves only h, W and that
    log-sum-exp. The backward recomputes each tile's logits (d logp / d logits = onehot(target) - softmax(logits)).
    Each slice of the weight gradient is one matmul over the rows, in W's dtype as autograd would compute it
    (partial products are summed in fp32 only when the rows span several chunks), written straight into the
    gradient: neither a [rows, vocab] logits tensor nor a [vocab, hidden] fp32 buffer ever exists, only one tile.
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, targets: Tensor, chunk_size: int,
                vocab_chunk_size: int) -> Tensor:
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


def plain_sequence_logps(model: nn.Module, batch: dict[str, Tensor]) -> SequenceLogps:
    """The textbook computation (full logits, log_softmax, gather, masked sum), for any causal LM."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits[:, :-1]
    mask = batch["response_mask"][:, 1:]
    per_token = upcast(logits).log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return SequenceLogps((per_token * mask).sum(-1), mask.sum(-1).to(per_token.dtype))
