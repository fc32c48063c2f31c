"""The inputs the ThinkSwitcher benchmarks share: the training questions, their MiniLM embeddings (kept in
a cache file between runs when asked) and their surface features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from router_models.encoder import SentenceEncoder
from router_models.errors import InputError
from router_models.thinkswitch.data import ThinkRecord, load_records, select_split
from router_models.thinkswitch.features import feature_matrix
from router_models.thinkswitch.switcher import embed


def training_inputs(
    data: Sequence[str],
    cache: str | None,
    max_length: int,
    cap: int | None = None,
    splits: Sequence[str] = ("train", "val"),
) -> tuple[list[ThinkRecord], torch.Tensor, torch.Tensor]:
    """The questions of `splits` in the `data` files, (N, 384) embeddings and (N, F) features; `cache`: a
    file to read the embeddings from, or to write them to where it does not exist yet."""
    records = select_split(load_records(data, cap), *splits)
    if not records:
        raise InputError(f"no questions in {', '.join(data)} (splits: {', '.join(splits)})")
    texts = [record.prompt for record in records]
    if cache and Path(cache).exists():
        embeddings = torch.load(cache)
        if len(embeddings) != len(records):
            raise SystemExit(f"{cache}: {len(embeddings)} cached embeddings for {len(records)} questions")
    else:
        embeddings = embed(SentenceEncoder(max_length=max_length), texts)
        if cache:
            torch.save(embeddings, cache)
    return records, embeddings, torch.from_numpy(feature_matrix(texts))
