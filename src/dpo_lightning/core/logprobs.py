"""Batch -> per-sequence summed log-probabilities of the response tokens: the one hot path of training.

The transformer backbone runs once over the batch (`batches` says how: which inputs, which mask, which outputs to
keep); the LM head then runs only on the positions that predict a response token, in tiles, through
`lm_head.ChunkedTokenLogps`, so the `[tokens, vocab]` fp32 logits of the whole batch are never materialised.
Models whose head is not a plain linear layer (soft-capped or scaled logits, adapters on the head) take the plain
path: the model's own logits, then gather. `plain_sequence_logps` is that textbook computation for any model and
is the reference the fast path is tested against. `PairScorer` bundles the head settings of a run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._pytree import register_dataclass

from .batches import PairBatch, TextbookBatch
from .lm_head import (
    TOKEN_CHUNK,
    VOCAB_CHUNK,
    ChunkedTokenLogps,
    check_tile_size,
    log_sum_sq_probs,
    upcast,
    vocab_tile,
)

log = logging.getLogger(__name__)

# Model families whose logits are exactly lm_head(final hidden state), with no scaling or soft-capping.
PLAIN_HEAD_MODEL_TYPES = {
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "gpt2",
    "gpt_neox",
    "phi3",
    "olmo",
    "olmo2",
    "smollm3",
}
# SDPA kernels for both layouts' masks. Not cuDNN: on an H100 (torch 2.11) it builds a new cuDNN graph for every
# new sequence length, ~27 ms of CPU per attention call, which made a 1B step 5x slower (measured, profiler).
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
KL_ELEMENTS = 1 << 23  # elements of one fp32 temporary in token_kl (32 MB)
_warned_plain_head: set[str] = set()


@dataclass
class PairLogps:
    """Summed log-probabilities of the chosen and rejected responses, with their token counts (one row a pair)."""

    chosen: Tensor
    rejected: Tensor
    chosen_tokens: Tensor
    rejected_tokens: Tensor
    # asked for by some losses only (PairScorer's switches), else None:
    chosen_shared: Tensor | None = None  # the sum over the first min(|y_w|, |y_l|) tokens (LD-DPO's shared part)
    rejected_shared: Tensor | None = None
    chosen_aligned: Tensor | None = None  # WPO: mean over tokens of log p(y_t) - log sum_v p(v)^2, detached
    rejected_aligned: Tensor | None = None
    labels: Tensor | None = None  # unpaired rows' labels (KTO: 1 desirable, 0 undesirable), the batch's pair_labels

    @property
    def chosen_mean(self) -> Tensor:
        return self.chosen / self.chosen_tokens.clamp(min=1)

    @property
    def rejected_mean(self) -> Tensor:
        return self.rejected / self.rejected_tokens.clamp(min=1)


# A pytree node, as a module's output: FSDP2's root unit then finds its tensors (and hooks their backward).
register_dataclass(PairLogps)


@dataclass
class ResponseStates:
    """The model's outputs at the positions that predict response tokens (flattened over the batch): the final
    hidden states, with the LM head to apply (`hidden` and `head`), or the model's own logits (`logits`)."""

    targets: Tensor  # [N] the response token ids
    rows: Tensor  # [N] the response row each position belongs to
    n_rows: int  # 2B: chosen rows 0..B-1, rejected rows B..2B-1
    hidden: Tensor | None = None  # [N, H] on the fused path
    head: nn.Linear | None = None
    logits: Tensor | None = None  # [N, V] on the plain path

    def detached(self) -> ResponseStates:
        return ResponseStates(
            self.targets,
            self.rows,
            self.n_rows,
            None if self.hidden is None else self.hidden.detach(),
            self.head,
            None if self.logits is None else self.logits.detach(),
        )


@dataclass
class SequenceLogps:
    logps: Tensor  # [rows] summed log-probs of the response tokens
    tokens: Tensor  # [rows] number of response tokens


def is_peft_model(model: nn.Module) -> bool:
    """A PEFT (e.g. LoRA) wrapper around a transformers model."""
    return hasattr(model, "disable_adapter") and hasattr(model, "get_base_model")


def unwrap(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (adapters stay injected in its layers)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def has_plain_head(model: nn.Module) -> bool:
    inner = unwrap(model)
    head = inner.get_output_embeddings()
    return type(head) is nn.Linear and getattr(inner.config, "model_type", None) in PLAIN_HEAD_MODEL_TYPES


def response_states(
    model: nn.Module, batch: PairBatch, fused_head: bool = True, separate_halves: bool = False
) -> ResponseStates:
    """Run the model's backbone (or the whole model on the plain path) over the batch's calls and keep the
    response positions. `separate_halves` (textbook layout): chosen and rejected rows as two trimmed forwards.
    Every call runs under the SDPA kernels of `SDPA_BACKENDS` (and `DPOModule.backward` under the same, so that
    activation checkpointing recomputes each layer with the kernel its forward used)."""
    inner = unwrap(model)
    fused = fused_head and _fused_head_applies(model)
    attn = getattr(inner.config, "_attn_implementation", "eager")
    values, targets, rows = [], [], []
    with sdpa_kernel(SDPA_BACKENDS):
        for call in batch.calls(attn, inner.dtype, separate_halves):
            if fused:
                out = inner.base_model(**call.inputs, use_cache=False).last_hidden_state
            else:
                out = model(**call.inputs, use_cache=False).logits
            values.append(out.flatten(0, 1)[call.predict_index])
            targets.append(call.targets)
            rows.append(call.rows)
    values, targets, rows = (x[0] if len(x) == 1 else torch.cat(x) for x in (values, targets, rows))
    if fused:
        return ResponseStates(targets, rows, batch.n_responses, hidden=values, head=inner.get_output_embeddings())
    return ResponseStates(targets, rows, batch.n_responses, logits=values)


def _fused_head_applies(model: nn.Module) -> bool:
    """Whether the tiled head can replace the model's own; a warning (once per model type) when it cannot."""
    if has_plain_head(model):
        return True
    kind = str(getattr(unwrap(model).config, "model_type", type(model).__name__))
    if kind not in _warned_plain_head:
        _warned_plain_head.add(kind)
        log.warning(
            "model type %r is not known to compute its logits as a plain linear head "
            "(logprobs.PLAIN_HEAD_MODEL_TYPES): computing full [tokens, vocab] logits instead of the tiled "
            "LM head (exact, but more memory)",
            kind,
        )
    return False


def token_logps(
    states: ResponseStates, chunk_size: int = TOKEN_CHUNK, vocab_chunk_size: int | str = VOCAB_CHUNK
) -> Tensor:
    """log p(target) at every response position, [N], in at least fp32."""
    if states.logits is not None:
        return upcast(states.logits).log_softmax(-1).gather(-1, states.targets[:, None]).squeeze(-1)
    weight = states.head.weight
    rows = min(chunk_size, states.hidden.shape[0])
    vocab = vocab_tile(vocab_chunk_size, rows, weight.shape[0], weight.device)
    return ChunkedTokenLogps.apply(states.hidden, weight, states.head.bias, states.targets, chunk_size, vocab)


def sequence_logps(
    states: ResponseStates, chunk_size: int = TOKEN_CHUNK, vocab_chunk_size: int | str = VOCAB_CHUNK
) -> SequenceLogps:
    per_token = token_logps(states, chunk_size, vocab_chunk_size)
    return SequenceLogps(_per_row(per_token, states), _per_row(torch.ones_like(per_token), states))


def pair_logps(
    states: ResponseStates,
    chunk_size: int = TOKEN_CHUNK,
    vocab_chunk_size: int | str = VOCAB_CHUNK,
    shared_prefix: bool = False,
    aligned: bool = False,
) -> PairLogps:
    """Per-pair summed log-probs and token counts: rows 0..B-1 are the chosen responses, B..2B-1 the rejected.
    `shared_prefix`: also each response's sum over the pair's shared length (LD-DPO); `aligned`: also WPO's mean
    aligned log-prob of each response (no gradient)."""
    per_token = token_logps(states, chunk_size, vocab_chunk_size)
    logps, tokens = _per_row(per_token, states), _per_row(torch.ones_like(per_token), states)
    half = states.n_rows // 2
    out = PairLogps(logps[:half], logps[half:], tokens[:half], tokens[half:])
    if shared_prefix:
        shared = torch.minimum(tokens[:half], tokens[half:]).repeat(2)  # per row: its pair's shared length
        inside = (_positions(states.rows) < shared[states.rows]).to(per_token.dtype)
        sums = _per_row(per_token * inside, states)
        out.chosen_shared, out.rejected_shared = sums[:half], sums[half:]
    if aligned:
        with torch.no_grad():
            gap = per_token.detach() - token_log_sum_sq(states, chunk_size, vocab_chunk_size)
            means = _per_row(gap, states) / tokens.clamp(min=1)
        out.chosen_aligned, out.rejected_aligned = means[:half], means[half:]
    return out


def _positions(rows: Tensor) -> Tensor:
    """Each response token's position within its response (the tokens of a response come in order)."""
    order = torch.argsort(rows, stable=True)
    sorted_rows = rows[order]
    starts = torch.ones_like(sorted_rows, dtype=torch.bool)
    starts[1:] = sorted_rows[1:] != sorted_rows[:-1]
    first = torch.cummax(torch.where(starts, torch.arange(rows.numel(), device=rows.device), 0), 0).values
    positions = torch.empty_like(rows)
    positions[order] = torch.arange(rows.numel(), device=rows.device) - first
    return positions


@torch.no_grad()
def token_log_sum_sq(
    states: ResponseStates, chunk_size: int = TOKEN_CHUNK, vocab_chunk_size: int | str = VOCAB_CHUNK
) -> Tensor:
    """log sum_v p(v | context)^2 at every response position, [N] (WPO's alignment term), in tiles on the fused path."""
    if states.logits is not None:
        return (2 * upcast(states.logits).log_softmax(-1)).logsumexp(-1)
    weight = states.head.weight
    rows = min(chunk_size, states.hidden.shape[0])
    vocab = vocab_tile(vocab_chunk_size, rows, weight.shape[0], weight.device)
    return log_sum_sq_probs(states.hidden, weight, states.head.bias, chunk_size, vocab)


def _per_row(values: Tensor, states: ResponseStates) -> Tensor:
    return torch.zeros(states.n_rows, dtype=values.dtype, device=values.device).index_add(0, states.rows, values)


@torch.no_grad()
def token_kl(policy: ResponseStates, reference: ResponseStates, chunk_size: int = TOKEN_CHUNK) -> Tensor:
    """Exact KL(pi(.|context) || pi_ref(.|context)) over the vocabulary at each response position, [N].

    Full-vocabulary rows are needed here, so the rows go `KL_ELEMENTS // vocab` at a time (e.g. 65 rows of a 128k
    vocabulary), which keeps each fp32 temporary near 32 MB."""
    vocab = policy.head.weight.shape[0] if policy.logits is None else policy.logits.shape[-1]
    rows = max(1, min(chunk_size, KL_ELEMENTS // vocab))
    out = []
    for start in range(0, policy.targets.numel(), rows):
        logp = _logits(policy, start, rows).log_softmax(-1)
        logq = _logits(reference, start, rows).log_softmax(-1)
        out.append((logp.exp() * (logp - logq)).sum(-1))
    return torch.cat(out) if out else policy.targets.new_zeros(0, dtype=torch.float32)


def _logits(states: ResponseStates, start: int, size: int) -> Tensor:
    if states.logits is not None:
        return upcast(states.logits[start : start + size])
    hidden = states.hidden[start : start + size]
    return upcast(F.linear(hidden.to(states.head.weight.dtype), states.head.weight, states.head.bias))


@dataclass
class PairScorer:
    """How a run turns a model and a batch into per-pair log-probs: the `module.*` head and layout switches.
    The policy and every live reference are scored by the same scorer."""

    fused_head: bool = True
    chunk_size: int = TOKEN_CHUNK
    vocab_chunk_size: int | str = VOCAB_CHUNK  # or "auto" (lm_head.vocab_tile)
    separate_halves: bool = True
    shared_prefix: bool = False  # the policy's sums over each pair's shared length too (LD-DPO)
    aligned: bool = False  # the policy's mean aligned log-probs too (WPO)

    def __post_init__(self) -> None:
        check_tile_size("head_chunk_size", self.chunk_size)
        check_tile_size("head_vocab_chunk_size", self.vocab_chunk_size)

    def states(self, model: nn.Module, batch: PairBatch) -> ResponseStates:
        return response_states(model, batch, self.fused_head, self.separate_halves)

    def pairs(self, states: ResponseStates, policy: bool = False) -> PairLogps:
        """The pairs' log-probs; the policy's with the extra sums its loss asks for (as TRL, a reference's are the
        plain sums: LD-DPO desensitises the policy only, WPO weighs by the policy)."""
        extra = dict(shared_prefix=self.shared_prefix and policy, aligned=self.aligned and policy)
        return pair_logps(states, self.chunk_size, self.vocab_chunk_size, **extra)

    def kl(self, policy: ResponseStates, reference: ResponseStates) -> Tensor:
        return token_kl(policy.detached(), reference, self.chunk_size)


def plain_sequence_logps(model: nn.Module, batch: TextbookBatch) -> SequenceLogps:
    """The textbook computation (full logits, log_softmax, gather, masked sum), for any causal LM."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits[:, :-1]
    mask = batch.response_mask[:, 1:]
    per_token = upcast(logits).log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return SequenceLogps((per_token * mask).sum(-1), mask.sum(-1).to(per_token.dtype))
