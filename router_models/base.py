"""The one interface every router implements: fit on a routing table, score queries, save/load."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from router_models.artifact import Manifest, save_artifact
from router_models.data import RoutingTable


class Router(ABC):
    """Scores every candidate for each query: higher is better; the gateway routes to the argmax.
    Every kind scores in [0, 1], readable as the candidate's expected quality: the learned routers
    give the probability that the answer is among the best, kNN and best_single mean normalised scores.

    `version` is the artifact's content hash ("" until saved or loaded): cache keys include it, so a
    retrained router never reuses decisions of the previous one.
    """

    kind: ClassVar[str]
    config_class: ClassVar[type]
    encoder: ClassVar[str | None] = None
    resumable: ClassVar[bool] = False  # `fit` keeps checkpoints in `workdir` and can `resume` from them

    def __init__(self, candidates: list[str], config: Any) -> None:
        self.candidates = list(candidates)
        self.config = config
        self.version = ""

    @abstractmethod
    def score(self, queries: list[str]) -> np.ndarray:
        """(Q,) queries -> (Q, len(candidates)) float scores, without gradients."""

    @classmethod
    @abstractmethod
    def fit(
        cls,
        train: RoutingTable,
        config: Any,
        val: RoutingTable | None = None,
        workdir: Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> Router:
        """Learn from the training table. The validation table, if given, picks among checkpoints;
        `workdir` keeps resumable checkpoints of long fits, `resume` continues from them; `progress`
        shows progress bars."""

    @abstractmethod
    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything `from_tensors` needs besides the config."""

    @classmethod
    @abstractmethod
    def from_tensors(cls, candidates: list[str], config: Any, tensors: dict[str, torch.Tensor]) -> Router:
        """Rebuild a saved router."""

    def choose(self, queries: list[str]) -> list[str]:
        """The best-scored candidate per query."""
        return [self.candidates[i] for i in self.score(queries).argmax(axis=1)]

    def save(self, directory: str | Path) -> Manifest:
        manifest = Manifest(
            kind=self.kind,
            candidates=self.candidates,
            encoder=self.encoder,
            config=dataclasses.asdict(self.config),
        )
        written = save_artifact(directory, manifest, self.tensors())
        self.version = written.version
        return written
