"""Tokenized pairs -> one batch, in one of the two layouts of `batches`.

`PairCollator` builds a `TextbookBatch`: the B chosen sequences, then the B rejected ones, each prompt+response,
right-padded. `PackedPairCollator` builds a `PackedBatch`: each pair as one sequence prompt+chosen+rejected, so the
prompt runs once for both responses, and several pairs share a row when they fit. Both carry `pair_keys`, a
64-bit hash of each pair's token ids (the key of the reference log-prob cache).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from ..core.batches import CHOSEN, REJECTED, PackedBatch, TextbookBatch
from .tokenize import TokenizedPair


def pair_key(pair: TokenizedPair) -> int:
    """A signed 64-bit hash of the pair's token ids: equal pairs (same text, same tokenization) get equal keys."""
    text = f"{pair.prompt}|{pair.chosen}|{pair.rejected}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little", signed=True)


def _round_up(width: int, multiple: int | None) -> int:
    return -(-width // multiple) * multiple if multiple else width


@dataclass
class PairCollator:
    """Right-pads prompt+response sequences to the longest in the batch.

    `response_mask[i, t]` is true where token t of row i is a response token (one whose log-probability counts);
    rows 0..B-1 are the chosen responses and rows B..2B-1 the rejected ones, in the same pair order.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, pairs: list[TokenizedPair]) -> TextbookBatch:
        rows = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
        width = _round_up(max(len(prompt) + len(response) for prompt, response in rows), self.pad_to_multiple_of)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (prompt, response) in enumerate(rows):
            n = len(prompt) + len(response)
            input_ids[i, :n] = torch.tensor(prompt + response)
            attention_mask[i, :n] = 1
            response_mask[i, len(prompt) : n] = True
        return TextbookBatch(
            input_ids, attention_mask, response_mask, pair_keys(pairs), pair_sources(pairs), pair_labels(pairs)
        )


@dataclass
class PackedPairCollator:
    """Each pair as one segment `prompt, chosen, rejected`; segments packed into as few rows as fit.

    Rows are as wide as the longest pair; pairs go first-fit in decreasing length, so a row can hold several short
    pairs and padding is only what is left at row ends. The model sees, per token, exactly the context of the
    textbook layout: `segment_ids` and `branch_ids` build a mask (`PackedBatch.attention_mask`) that lets a token
    attend only to earlier tokens of its own pair, and a rejected token not to the chosen ones; `position_ids`
    restart at 0 for each pair and continue from the prompt's end for both responses.

    The positions that predict response tokens are listed flat: `predict_index` (row * width + position),
    `targets` (the token predicted) and `target_rows` (pair i's chosen response -> i, its rejected one -> B + i).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    pack: bool = True  # false: one pair per row

    def __call__(self, pairs: list[TokenizedPair]) -> PackedBatch:
        lengths = [len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs]
        width = _round_up(max(lengths), self.pad_to_multiple_of)
        row_of, offset_of, used = {}, {}, []
        for i in sorted(range(len(pairs)), key=lambda i: -lengths[i]):
            row = next((r for r, n in enumerate(used) if self.pack and n + lengths[i] <= width), len(used))
            if row == len(used):
                used.append(0)
            row_of[i], offset_of[i] = row, used[row]
            used[row] += lengths[i]
        shape = (len(used), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        segment_ids = torch.full(shape, -1, dtype=torch.long)
        branch_ids = torch.zeros(shape, dtype=torch.long)
        predict, targets, target_rows = [], [], []
        for i, p in enumerate(pairs):
            r, o = row_of[i], offset_of[i]
            n_p, n_c, n_r = len(p.prompt), len(p.chosen), len(p.rejected)
            input_ids[r, o : o + lengths[i]] = torch.tensor(p.prompt + p.chosen + p.rejected)
            position_ids[r, o : o + n_p + n_c] = torch.arange(n_p + n_c)
            position_ids[r, o + n_p + n_c : o + lengths[i]] = torch.arange(n_p, n_p + n_r)
            segment_ids[r, o : o + lengths[i]] = i
            branch_ids[r, o + n_p : o + n_p + n_c] = CHOSEN
            branch_ids[r, o + n_p + n_c : o + lengths[i]] = REJECTED
            base = r * width + o
            for side, start, response in ((0, n_p, p.chosen), (1, n_p + n_c, p.rejected)):
                # token k of the response sits at `start + k`; it is predicted by the token before it in its own
                # sequence: the previous response token, or for k = 0 the last prompt token. With an empty prompt
                # the first token has no predictor and is not scored (as in the textbook layout).
                sources = torch.arange(start - 1, start + len(response) - 1)
                sources[:1] = n_p - 1
                keep = sources >= 0
                predict.append(base + sources[keep])
                targets.append(torch.tensor(response, dtype=torch.long)[keep])
                target_rows.append(torch.full((int(keep.sum()),), i + side * len(pairs), dtype=torch.long))
        return PackedBatch(
            input_ids,
            position_ids,
            segment_ids,
            branch_ids,
            torch.cat(predict),
            torch.cat(targets),
            torch.cat(target_rows),
            pair_keys(pairs),
            pair_sources(pairs),
            pair_labels(pairs),
        )


def pair_keys(pairs: list[TokenizedPair]) -> torch.Tensor:
    return torch.tensor([pair_key(p) for p in pairs], dtype=torch.long)


def pair_sources(pairs: list[TokenizedPair]) -> torch.Tensor:
    return torch.tensor([p.source for p in pairs], dtype=torch.long)


def pair_labels(pairs: list[TokenizedPair]) -> torch.Tensor:
    return torch.tensor([-1 if p.label is None else int(p.label) for p in pairs], dtype=torch.long)
