"""Token layout of the masked Lookahead router.

    [CLS] query [SEP] | s_1 ... s_m [SEP] | ... | s_1 ... s_m [SEP]      (one block per candidate)

Slot i of block t holds token i of candidate t's response while visible, else candidate t's own
model-ID embedding. Position ids restart at the query length in every block, so each block looks
like "the response that follows this query".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

IGNORE = -100


class SpecialIds(TypedDict):
    """Token ids `build_batch` lays out: [CLS], [SEP], padding, and the placeholder under ID slots."""

    cls_id: int
    sep_id: int
    pad_id: int
    placeholder_id: int


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) token ids; ID slots carry a placeholder
    attention_mask: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    candidate_index: torch.Tensor  # (B, L) t at candidate t's ID slots, -1 elsewhere
    slot_targets: torch.Tensor  # (B, L) the true token at hidden slots, IGNORE elsewhere


def tokenize_queries(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_tokens: int
) -> list[list[int]]:
    """Token ids without specials, at most `max_tokens - 2`: the head (3/4) and the tail (1/4), since
    the tail often carries the format instruction that tells the task apart."""
    budget = max(1, max_tokens - 2)
    if not texts:
        return []
    # cut very long texts before tokenising: only the ends can be kept anyway
    clipped = [t if len(t) <= 16 * budget else t[: 12 * budget] + " " + t[-6 * budget :] for t in texts]
    ids = tokenizer(clipped, add_special_tokens=False)["input_ids"]
    tail = budget // 4
    return [
        seq if len(seq) <= budget else seq[: budget - tail] + (seq[-tail:] if tail else []) for seq in ids
    ]


def tokenize_responses(
    tokenizer: PreTrainedTokenizerBase, responses: Sequence[Sequence[str]], block_size: int
) -> np.ndarray:
    """(N, T, m) the first m response tokens of each candidate, IGNORE-padded."""
    n, t = len(responses), len(responses[0]) if responses else 0
    out = np.full((n, t, block_size), IGNORE, dtype=np.int64)
    if n == 0 or block_size == 0:
        return out
    flat = [text[: 12 * block_size] for row in responses for text in row]
    for k, seq in enumerate(tokenizer(flat, add_special_tokens=False)["input_ids"]):
        seq = seq[:block_size]
        out[k // t, k % t, : len(seq)] = seq
    return out


def build_batch(
    queries: Sequence[list[int]],
    n_candidates: int,
    block_size: int,
    hidden: int,
    cls_id: int,
    sep_id: int,
    pad_id: int,
    placeholder_id: int,
    responses: np.ndarray | None = None,
) -> Batch:
    """Lay out a batch. `hidden` end slots per block are hidden (all of them at inference, where
    `responses` is None); visible slots show the true response token where there is one."""
    rows = []
    for b, query in enumerate(queries):
        ids = [cls_id, *query, sep_id]
        query_len = len(ids)
        positions = list(range(query_len))
        cand = [-1] * query_len
        targets = [IGNORE] * query_len
        for t in range(n_candidates if block_size else 0):
            truth = responses[b, t] if responses is not None else np.full(block_size, IGNORE)
            for i in range(block_size):
                visible = i < block_size - hidden and truth[i] != IGNORE
                ids.append(int(truth[i]) if visible else placeholder_id)
                cand.append(-1 if visible else t)
                targets.append(int(truth[i]) if not visible and truth[i] != IGNORE else IGNORE)
            ids.append(sep_id)
            cand.append(-1)
            targets.append(IGNORE)
            positions.extend(range(query_len, query_len + block_size + 1))
        rows.append((ids, positions, cand, targets))
    length = max(len(r[0]) for r in rows)

    def pad(column: int, value: int) -> torch.Tensor:
        return torch.tensor([r[column] + [value] * (length - len(r[column])) for r in rows], dtype=torch.long)

    mask = torch.tensor([[1] * len(r[0]) + [0] * (length - len(r[0])) for r in rows], dtype=torch.long)
    return Batch(pad(0, pad_id), mask, pad(1, 0), pad(2, -1), pad(3, IGNORE))
