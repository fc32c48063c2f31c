"""The masked Lookahead router and the MLC baseline behind the common `Router` interface."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from router_models.base import Router
from router_models.data import RoutingTable
from router_models.encoder import ENCODER_NAME, build_encoder, load_encoder_config, load_tokenizer
from router_models.fast_encoder import FastEncoder
from router_models.lookahead.config import LookaheadConfig
from router_models.lookahead.inputs import tokenize_queries
from router_models.lookahead.masked import LookaheadMasked
from router_models.lookahead.train import layout_ids, score_token_ids, train_masked


class LookaheadRouter(Router):
    """Masked Lookahead: scores come from [CLS] after the encoder has 'foreseen' every candidate's
    response in its own block (all slots hidden at inference, so only the query is needed). A score
    is the predicted probability that the candidate's answer is among the best (label of §1)."""

    kind = "lookahead"
    resumable = True
    config_class = LookaheadConfig
    encoder = ENCODER_NAME

    def __init__(self, candidates: list[str], config: LookaheadConfig, model: LookaheadMasked) -> None:
        super().__init__(candidates, config)
        self.model = model.eval()
        self.fast = FastEncoder(model.encoder)  # the inference copy of the (trained) encoder
        self.tokenizer = load_tokenizer()
        self.special = layout_ids(self.tokenizer)

    @classmethod
    def adapt_config(cls, config: LookaheadConfig) -> LookaheadConfig:
        return config

    def score(self, queries: list[str]) -> np.ndarray:
        ids = tokenize_queries(self.tokenizer, queries, self.config.max_query_tokens)
        logits = score_token_ids(self.model, ids, len(self.candidates), self.special, self.fast)
        return 1.0 / (1.0 + np.exp(-logits))  # P(candidate is among the best), the quality the gateway reads

    @classmethod
    def fit(
        cls,
        train: RoutingTable,
        config: LookaheadConfig,
        val: RoutingTable | None = None,
        workdir: Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> LookaheadRouter:
        config = cls.adapt_config(config)
        return cls(train.candidates, config, train_masked(train, config, val, workdir, resume, progress))

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    @classmethod
    def from_tensors(
        cls, candidates: list[str], config: LookaheadConfig, tensors: dict[str, torch.Tensor]
    ) -> LookaheadRouter:
        model = LookaheadMasked(config, len(candidates), build_encoder(load_encoder_config()))
        model.load_state_dict(tensors)
        return cls(candidates, config, model)


class MlcRouter(LookaheadRouter):
    """Query-only multi-label classifier: the Lookahead network without response blocks or MLM loss."""

    kind = "mlc"

    @classmethod
    def adapt_config(cls, config: LookaheadConfig) -> LookaheadConfig:
        return dataclasses.replace(config, block_size=0, mlm_weight=0.0)
