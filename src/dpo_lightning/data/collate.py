"""Tokenized pairs -> one padded batch: the B chosen sequences, then the B rejected ones."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .tokenize import TokenizedPair


@dataclass
class PairCollator:
    """Right-pads prompt+response sequences to the longest in the batch.

    `response_mask[i, t]` is true where token t of row i is a response token (one whose log-probability counts);
    rows 0..B-1 are the chosen responses and rows B..2B-1 the rejected ones, in the same pair order.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, pairs: list[TokenizedPair]) -> dict[str, Tensor]:
        rows = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
        width = max(len(prompt) + len(response) for prompt, response in rows)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        response_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, (prompt, response) in enumerate(rows):
            n = len(prompt) + len(response)
            input_ids[i, :n] = torch.tensor(prompt + response)
            attention_mask[i, :n] = 1
            response_mask[i, len(prompt):n] = True
        return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}
