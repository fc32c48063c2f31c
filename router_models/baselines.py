"""Reference routers: random, best single model, and kNN over frozen sentence embeddings.

(The oracle needs the true scores, so it exists only in evaluation: see `evaluate.py`.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from router_models.base import Router
from router_models.configs import at_least, refuse_first
from router_models.data import RoutingTable
from router_models.encoder import ENCODER_NAME, ENCODER_POSITIONS, SentenceEncoder


@dataclass(frozen=True)
class RandomConfig:
    seed: int = 0


class RandomRouter(Router):
    """Uniform random scores, fixed per (seed, query) so a repeated query gets the same choice."""

    kind = "random"
    config_class = RandomConfig

    def score(self, queries: list[str]) -> np.ndarray:
        rows = []
        for query in queries:
            seed = int.from_bytes(hashlib.sha256(f"{self.config.seed}\0{query}".encode()).digest()[:8], "big")
            rows.append(np.random.default_rng(seed).random(len(self.candidates)))
        return np.array(rows, dtype=np.float32).reshape(len(queries), len(self.candidates))

    @classmethod
    def fit(
        cls,
        train: RoutingTable,
        config: RandomConfig,
        val: RoutingTable | None = None,
        workdir: Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> RandomRouter:
        return cls(train.candidates, config)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    @classmethod
    def from_tensors(
        cls, candidates: list[str], config: RandomConfig, tensors: dict[str, torch.Tensor]
    ) -> RandomRouter:
        return cls(candidates, config)


@dataclass(frozen=True)
class BestSingleConfig:
    pass


class BestSingleRouter(Router):
    """Every query goes to the candidate with the best mean normalised score on the training data."""

    kind = "best_single"
    config_class = BestSingleConfig

    def __init__(self, candidates: list[str], config: BestSingleConfig, means: np.ndarray) -> None:
        super().__init__(candidates, config)
        self.means = means.astype(np.float32)  # (T,)

    def score(self, queries: list[str]) -> np.ndarray:
        return np.tile(self.means, (len(queries), 1))

    @classmethod
    def fit(
        cls,
        train: RoutingTable,
        config: BestSingleConfig,
        val: RoutingTable | None = None,
        workdir: Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> BestSingleRouter:
        return cls(train.candidates, config, train.normalised.mean(axis=0))

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"means": torch.from_numpy(self.means)}

    @classmethod
    def from_tensors(
        cls, candidates: list[str], config: BestSingleConfig, tensors: dict[str, torch.Tensor]
    ) -> BestSingleRouter:
        return cls(candidates, config, tensors["means"].numpy())


@dataclass(frozen=True)
class KnnConfig:
    k: int = 100
    max_query_tokens: int = 128  # MiniLM's training length
    batch_size: int = 64

    def __post_init__(self) -> None:
        """Refuse an unusable (well-typed) config: `ValueError` naming the first problem."""
        refuse_first([
            *at_least(self, 1, "k", "max_query_tokens", "batch_size"),
            (self.max_query_tokens <= ENCODER_POSITIONS, f"max_query_tokens must be at most {ENCODER_POSITIONS} "
             f"(the encoder's limit), got {self.max_query_tokens}"),
        ])


class KnnRouter(Router):
    """Mean normalised scores of the k training queries nearest by cosine similarity of frozen
    MiniLM embeddings."""

    kind = "knn"
    config_class = KnnConfig
    encoder = ENCODER_NAME

    def __init__(
        self,
        candidates: list[str],
        config: KnnConfig,
        keys: torch.Tensor,
        values: torch.Tensor,
        sentence_encoder: SentenceEncoder | None = None,
    ) -> None:
        super().__init__(candidates, config)
        self.keys = keys.float()  # (N, 384), unit norm
        self.values = values.float()  # (N, T) normalised scores
        self.sentence_encoder = sentence_encoder or SentenceEncoder(max_length=config.max_query_tokens)

    @torch.inference_mode()
    def score(self, queries: list[str]) -> np.ndarray:
        embeddings = self.sentence_encoder.encode(queries, batch_size=self.config.batch_size)  # (Q, 384)
        similarity = embeddings @ self.keys.T  # (Q, N)
        k = min(self.config.k, self.keys.shape[0])
        nearest = similarity.topk(k, dim=1).indices  # (Q, k)
        return self.values[nearest].mean(dim=1).numpy()  # (Q, T)

    @classmethod
    def fit(
        cls,
        train: RoutingTable,
        config: KnnConfig,
        val: RoutingTable | None = None,
        workdir: Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> KnnRouter:
        sentence_encoder = SentenceEncoder(max_length=config.max_query_tokens)
        keys = sentence_encoder.encode(train.prompts, batch_size=config.batch_size, progress=progress)
        return cls(
            train.candidates, config, keys, torch.from_numpy(train.normalised).float(), sentence_encoder
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        # fp16 halves the artifact; cosine similarities lose nothing that changes a top-k
        return {"keys": self.keys.half(), "values": self.values.half()}

    @classmethod
    def from_tensors(
        cls, candidates: list[str], config: KnnConfig, tensors: dict[str, torch.Tensor]
    ) -> KnnRouter:
        return cls(candidates, config, tensors["keys"], tensors["values"])
