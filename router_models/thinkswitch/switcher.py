"""Inference for the gateway: `load_switcher(path).predict(queries)` -> predicted pass rates (short, long)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from router_models.encoder import SentenceEncoder, set_threads
from router_models.thinkswitch.artifact import load_head
from router_models.thinkswitch.features import feature_matrix
from router_models.thinkswitch.model import ThinkSwitchHead


def embed(encoder: SentenceEncoder, texts: list[str], batch_size: int = 64, progress: bool = False) -> torch.Tensor:
    """(N,) texts -> (N, 384) embeddings, batched by length so short questions are not padded to long ones
    (`progress`: see `SentenceEncoder.encode`)."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    encoded = encoder.encode([texts[i] for i in order], batch_size=batch_size, progress=progress)
    out = torch.empty_like(encoded)
    out[torch.tensor(order, dtype=torch.long)] = encoded
    return out


class Switcher:
    """A loaded ThinkSwitcher: MiniLM + surface features + the head.

    `predict` may be called from several threads (the gateway runs it in a pool): calls are serialised,
    because the fast tokenizer rejects concurrent use and the cores are shared by the batch anyway.
    """

    def __init__(
        self,
        head: ThinkSwitchHead,
        encoder: SentenceEncoder,
        version: str,
        default_tau: float,
        short_retry: bool = False,
    ) -> None:
        self.head = head
        self.encoder = encoder
        self.version = version
        self.default_tau = default_tau
        # whether τ was chosen for the policy that asks a long answer cut at the cap again in short mode
        self.short_retry = short_retry
        self._lock = threading.Lock()

    @torch.inference_mode()
    def predict(self, queries: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """(N,) queries -> (N, 2) float32 predicted pass rates, columns (short, long) (`progress`: a bar while
        encoding, as `embed`)."""
        if not queries:
            return np.empty((0, 2), dtype=np.float32)
        features = torch.from_numpy(feature_matrix(queries))  # (N, F)
        with self._lock:
            embeddings = embed(self.encoder, queries, batch_size, progress)  # (N, 384)
            return self.head(embeddings, features).numpy().astype(np.float32)

    def go_long(self, queries: list[str], tau: float | None = None) -> np.ndarray:
        """(N,) bool: long mode where ŷ_long − ŷ_short ≥ τ (default: the artifact's recommended τ)."""
        pred = self.predict(queries)
        return (pred[:, 1] - pred[:, 0]) >= (self.default_tau if tau is None else tau)


def load_switcher(path: str | Path, threads: int | None = None) -> Switcher:
    """Load an artifact directory for inference (offline; `threads` pins torch's intra-op threads)."""
    set_threads(threads)
    head, manifest = load_head(path)
    encoder = SentenceEncoder(max_length=head.config.max_length)
    short_retry = bool(manifest.get("train_options", {}).get("short_retry", False))
    return Switcher(head, encoder, manifest["version"], float(manifest["default_tau"]), short_retry)
