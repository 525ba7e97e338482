"""The two batch layouts, as types: each knows how the model runs over it and which outputs to keep.

`TextbookBatch`: the B chosen sequences, then the B rejected ones, each prompt+response, right-padded, under the
usual 2D padding mask. `PackedBatch`: each pair as one segment prompt+chosen+rejected (the prompt computed once),
several pairs per row, under a mask that keeps every token inside its own pair and every rejected token away from
the chosen ones. Both are built by `data.collate` and read by `logprobs`, which never looks inside: it asks a batch
for its `ModelCall`s (the model inputs of each forward, with the positions whose outputs predict response tokens)
and scores those positions. Response rows are numbered the same in both: pair i's chosen response is row i, its
rejected response row B + i.

A third layout (another mask, another packing) is a new class with `calls()`, `to()` and `pair_keys`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import create_block_mask

PROMPT, CHOSEN, REJECTED = 0, 1, 2  # branch ids of the packed layout
# Attention implementations that take an arbitrary 4D mask (the packed layout needs one).
# sdpa and eager take a dense [R, 1, W, W] mask; flex_attention a block-sparse BlockMask of the same rule (CUDA).
MASKED_ATTENTION = ("sdpa", "eager", "flex_attention")


def check_packed_attention(attn: str | None, on_cpu: bool = False) -> None:
    """The packed layout runs under a 4D mask, which flash-attention-style implementations do not take; its
    FlexAttention path trains only on a CUDA GPU (PyTorch's FlexAttention has no CPU backward)."""
    if attn is not None and attn not in MASKED_ATTENTION:
        raise ValueError(
            f"data.packing=true needs an attention that takes a 4D mask ({', '.join(MASKED_ATTENTION)}), "
            f"but the model's attention (model.attn_implementation) is {attn!r}: set data.packing=false or "
            "model.attn_implementation=sdpa"
        )
    if attn == "flex_attention" and on_cpu:
        raise ValueError(
            "model.attn_implementation=flex_attention needs a CUDA GPU (PyTorch's FlexAttention has no backward on "
            "a CPU): use model.attn_implementation=sdpa here"
        )


def pad_token_id(tokenizer: Any) -> int:
    """The id batches are padded with: the tokenizer's pad token, else its EOS (padding is masked out anyway)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


@dataclass
class ModelCall:
    """One forward of the model over (part of) a batch, and which of its outputs to keep."""

    inputs: dict[str, Tensor]  # keyword arguments of the model's forward
    predict_index: Tensor  # [N] flat (row * width + position) indices of the outputs that predict response tokens
    targets: Tensor  # [N] the response token each of those outputs predicts
    rows: Tensor  # [N] the response row of each target (pair i: chosen -> i, rejected -> B + i)


class _Batch:
    """What both layouts share: moving to a device (Lightning calls `to`) and the pair keys."""

    pair_keys: Tensor  # [B] a 64-bit hash of each pair's token ids (the reference log-prob cache's key)
    pair_sources: Tensor  # [B] each pair's source in a mixture (data=mixture; 0 otherwise), for per-source metrics
    pair_labels: Tensor  # [B] an unpaired row's label (KTO: 1 desirable, 0 undesirable); -1 for a preference pair

    def to(self, device: torch.device | str, non_blocking: bool = False):
        return replace(
            self, **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )

    @property
    def n_pairs(self) -> int:
        return int(self.pair_keys.shape[0])

    @property
    def n_responses(self) -> int:
        return 2 * self.n_pairs


@dataclass
class TextbookBatch(_Batch):
    """Rows 0..B-1 are prompt+chosen, rows B..2B-1 prompt+rejected, in the same pair order, right-padded.
    `response_mask[i, t]` is true where token t of row i is a response token (one whose log-probability counts)."""

    input_ids: Tensor  # [2B, W]
    attention_mask: Tensor  # [2B, W] 1 for real tokens, 0 for padding
    response_mask: Tensor  # [2B, W] bool
    pair_keys: Tensor  # [B]
    pair_sources: Tensor  # [B]
    pair_labels: Tensor  # [B]

    def calls(self, attn: str, dtype: torch.dtype, separate_halves: bool = False) -> list[ModelCall]:
        """One forward over all rows; with `separate_halves`, the chosen and the rejected rows as two forwards,
        each trimmed to its own longest sequence (less padding, smaller activations; the results are identical)."""
        n = self.input_ids.shape[0]
        groups = [(0, n // 2), (n // 2, n)] if separate_halves and n > 1 else [(0, n)]
        return [self._call(start, stop) for start, stop in groups]

    def _call(self, start: int, stop: int) -> ModelCall:
        width = int(self.attention_mask[start:stop].sum(-1).max())  # rows are right-padded
        ids, attention = self.input_ids[start:stop, :width], self.attention_mask[start:stop, :width]
        mask = self.response_mask[start:stop, 1:width]  # token t+1 is predicted by the output at t
        rows, positions = mask.nonzero(as_tuple=True)
        return ModelCall(
            {"input_ids": ids, "attention_mask": attention}, rows * width + positions, ids[:, 1:][mask], start + rows
        )


@dataclass
class PackedBatch(_Batch):
    """Each pair as one segment `prompt, chosen, rejected`, several segments per row (see `PackedPairCollator`).

    `segment_ids` (-1 for padding) and `branch_ids` (PROMPT, CHOSEN, REJECTED) define the mask; `position_ids`
    restart at 0 for each pair and continue from the prompt's end for both responses. `predict_index` lists the
    flat positions whose outputs predict the response tokens `targets`, of response rows `target_rows`."""

    input_ids: Tensor  # [R, W]
    position_ids: Tensor  # [R, W]
    segment_ids: Tensor  # [R, W]
    branch_ids: Tensor  # [R, W]
    predict_index: Tensor  # [N]
    targets: Tensor  # [N]
    target_rows: Tensor  # [N]
    pair_keys: Tensor  # [B]
    pair_sources: Tensor  # [B]
    pair_labels: Tensor  # [B]

    def attention_mask(self, attn: str = "sdpa", dtype: torch.dtype = torch.float32):
        """The packed rule for the attention implementation `attn`: token i sees token j iff both belong to the same
        pair, j <= i, and not (i rejected and j chosen). Padding (segment -1) sees only padding, so no row is fully
        masked. sdpa: a [R, 1, W, W] boolean mask (True = attend); eager: the same, additive in `dtype` (0 or the
        dtype's minimum); flex_attention: a BlockMask, whose fully masked 128x128 blocks are skipped, not computed.
        Built once per batch and kind (the policy and a live reference share it)."""
        cache = self.__dict__.setdefault("_masks", {})
        key = (attn, dtype if attn == "eager" else None)
        if key not in cache:
            cache[key] = self._block_mask() if attn == "flex_attention" else self._dense_mask(attn, dtype)
        return cache[key]

    def _allowed(self, b, q: Tensor, kv: Tensor) -> Tensor:
        seg, branch = self.segment_ids, self.branch_ids
        same_pair = (seg[b, q] == seg[b, kv]) & (kv <= q)
        return same_pair & ~((branch[b, q] == REJECTED) & (branch[b, kv] == CHOSEN))

    def _dense_mask(self, attn: str, dtype: torch.dtype) -> Tensor:
        rows, width = self.segment_ids.shape
        pos = torch.arange(width, device=self.segment_ids.device)
        b = torch.arange(rows, device=pos.device)[:, None, None]
        allowed = self._allowed(b, pos[None, :, None], pos[None, None, :])[:, None]
        if attn != "eager":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=pos.device).masked_fill_(~allowed, torch.finfo(dtype).min)

    def _block_mask(self):

        rows, width = self.segment_ids.shape
        return create_block_mask(
            lambda b, h, q, kv: self._allowed(b, q, kv), rows, None, width, width, device=self.segment_ids.device
        )

    def calls(self, attn: str, dtype: torch.dtype, separate_halves: bool = False) -> list[ModelCall]:
        check_packed_attention(attn, on_cpu=self.input_ids.device.type == "cpu")
        inputs = {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "attention_mask": self.attention_mask(attn, dtype),
        }
        return [ModelCall(inputs, self.predict_index, self.targets, self.target_rows)]


PairBatch = TextbookBatch | PackedBatch

__all__ = [
    "CHOSEN",
    "MASKED_ATTENTION",
    "ModelCall",
    "PackedBatch",
    "PairBatch",
    "PROMPT",
    "REJECTED",
    "TextbookBatch",
    "check_packed_attention",
    "pad_token_id",
]
