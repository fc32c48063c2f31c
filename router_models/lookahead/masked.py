"""The masked-LM Lookahead network: a MiniLM encoder over joint query + response blocks, a routing
head on [CLS] and an MLM head that reconstructs the hidden response tokens."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from transformers import PreTrainedModel

from router_models.fast_encoder import FastEncoder
from router_models.lookahead.config import LookaheadConfig
from router_models.lookahead.inputs import Batch


class LookaheadMasked(nn.Module):
    def __init__(self, config: LookaheadConfig, n_candidates: int, encoder: PreTrainedModel) -> None:
        super().__init__()
        self.config = config
        self.encoder = encoder
        width = int(encoder.config.hidden_size)
        words = self.words().weight  # (V, H)
        words.requires_grad_(config.train_word_embeddings)
        # one new model-ID embedding per candidate, started at the mean word embedding plus noise
        start = words.detach().mean(0, keepdim=True).repeat(n_candidates, 1)
        self.model_ids = nn.Parameter(start + 0.02 * torch.randn_like(start))  # (T, H)
        self.route_head = nn.Sequential(
            nn.Linear(width, width),
            nn.GELU(),
            nn.LayerNorm(width),
            nn.Dropout(config.dropout),
            nn.Linear(width, n_candidates),
        )
        self.mlm_head = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.mlm_bias = nn.Parameter(torch.zeros(words.shape[0]))  # decoder weights tied to the vocabulary

    def words(self) -> nn.Embedding:
        """The encoder's vocabulary embedding (frozen by default; tied to the MLM decoder)."""
        return cast(nn.Embedding, self.encoder.get_input_embeddings())

    def embed(self, batch: Batch) -> torch.Tensor:
        """Input embeddings (B, L, H): words, with each candidate's model-ID embedding in its hidden slots."""
        embeds = self.words()(batch.input_ids)  # (B, L, H)
        is_slot = batch.candidate_index.ge(0).unsqueeze(-1)  # (B, L, 1)
        return torch.where(is_slot, self.model_ids[batch.candidate_index.clamp(min=0)], embeds)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Final hidden states (B, L, H)."""
        out = self.encoder(
            inputs_embeds=self.embed(batch),
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            token_type_ids=torch.zeros_like(batch.input_ids),
        )
        return out.last_hidden_state

    @torch.inference_mode()
    def fast_route_logits(self, batch: Batch, encoder: FastEncoder) -> torch.Tensor:
        """`route_logits(forward(batch))` through `encoder`, a `FastEncoder` copy of this model's encoder."""
        return self.route_logits(encoder(self.embed(batch), batch.attention_mask, batch.position_ids, first_only=True))

    def route_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, L, H) -> (B, T): one logit per candidate from [CLS]."""
        return self.route_head(hidden[:, 0])

    def mlm_logits(self, states: torch.Tensor) -> torch.Tensor:
        """(N, H) hidden-slot states -> (N, V) vocabulary logits."""
        return self.mlm_head(states) @ self.words().weight.T + self.mlm_bias
