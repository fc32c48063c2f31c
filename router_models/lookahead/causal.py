"""The causal-LM Lookahead network (the paper's SmolLM2-135M variant).

Training: per candidate t, the sequence `query <Model_t> response[:m] EOS`; the score of t is a linear
read-out of the hidden state at `<Model_t>`, and the response is reconstructed by next-token
prediction (loss weight λ = 0.5). Under causal attention the score sees only query + `<Model_t>`, so
inference is one sequence `query <Model_1> ... <Model_T>` whose ID tokens share the query's next
position and cannot see each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from router_models.configs import above_zero, at_least, refuse_first

IGNORE = -100


@dataclass(frozen=True)
class CausalConfig:
    """Model and training settings; `backbone` is the causal LM's own config (a dict), so an artifact
    rebuilds the network without the original checkpoint."""

    backbone: dict[str, Any] = field(default_factory=dict)
    backbone_path: str = ""  # pretrained HF directory to start from (training only); "" = random init
    block_size: int = 64  # response tokens reconstructed per candidate
    max_query_tokens: int = 256
    lm_weight: float = 0.5
    dropout: float = 0.1
    epochs: float = 2.0
    batch_size: int = 8  # queries per step (x T sequences)
    lr: float = 5e-5
    weight_decay: float = 0.01
    max_train_queries: int = 0
    seed: int = 0
    inference_batch_size: int = 16

    def __post_init__(self) -> None:
        """Refuse an untrainable (well-typed) config: `ValueError` naming the first problem."""
        refuse_first([
            *at_least(self, 0, "block_size", "lm_weight", "lr", "weight_decay", "max_train_queries"),
            *at_least(self, 1, "max_query_tokens", "batch_size", "inference_batch_size"),
            *above_zero(self, "epochs"),
            (0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}"),
        ])


class LookaheadCausal(nn.Module):
    def __init__(self, config: CausalConfig, n_candidates: int, lm: PreTrainedModel) -> None:
        super().__init__()
        self.config = config
        self.lm = lm
        words = cast(nn.Embedding, lm.get_input_embeddings()).weight  # (V, H)
        # the <Model_t> tokens: mean of the existing embeddings plus noise (Huang et al., NeurIPS 2025)
        start = words.detach().float().mean(0, keepdim=True).repeat(n_candidates, 1)
        self.model_ids = nn.Parameter(start + 0.02 * start.std() * torch.randn_like(start))  # (T, H)
        self.dropout = nn.Dropout(config.dropout)
        self.score_head = nn.Linear(words.shape[1], 1)

    def _embed(self, input_ids: torch.Tensor, candidate_index: torch.Tensor) -> torch.Tensor:
        embeds = cast(nn.Embedding, self.lm.get_input_embeddings())(input_ids)  # (B, L, H)
        ids = self.model_ids[candidate_index.clamp(min=0)].to(embeds.dtype)
        return torch.where(candidate_index.ge(0).unsqueeze(-1), ids, embeds)

    def training_losses(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        candidate_index: torch.Tensor,
        id_position: torch.Tensor,
        labels: torch.Tensor,
        n_candidates: int,
        targets: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One sequence per (query, candidate), rows ordered query-major: (B*T, L) tensors.
        `id_position` (B*T,) locates `<Model_t>`, `labels` (B*T, L) are next-token targets (IGNORE
        outside the response), `targets` (B, T) the routing labels. Returns (routing BCE, LM CE)."""
        out = self.lm(
            inputs_embeds=self._embed(input_ids, candidate_index),
            attention_mask=attention_mask,
            output_hidden_states=True,
        )
        last = out.hidden_states[-1]  # (B*T, L, H)
        at_id = last[torch.arange(last.shape[0]), id_position]  # (B*T, H)
        logits = self.score_head(self.dropout(at_id)).view(-1, n_candidates)  # (B, T)
        route = F.binary_cross_entropy_with_logits(logits.float(), targets)
        lm = F.cross_entropy(
            out.logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE
        )
        return route, lm

    def score(self, query_ids: list[list[int]], n_candidates: int, pad_id: int) -> torch.Tensor:
        """(Q,) tokenised queries -> (Q, T) logits from one sequence per query: `query <Model_1..T>`,
        the ID tokens at one shared position, each seeing the query and itself only."""
        lengths = [len(q) for q in query_ids]
        total = max(lengths) + n_candidates
        batch = len(query_ids)
        input_ids = torch.full((batch, total), pad_id, dtype=torch.long)
        cand = torch.full((batch, total), -1, dtype=torch.long)
        positions = torch.zeros((batch, total), dtype=torch.long)
        allowed = torch.zeros((batch, total, total), dtype=torch.bool)  # (B, L, L): query i may see key j
        for b, query in enumerate(query_ids):
            n = len(query)
            input_ids[b, :n] = torch.tensor(query, dtype=torch.long)
            positions[b, :n] = torch.arange(n)
            allowed[b, :n, :n] = torch.tril(torch.ones(n, n, dtype=torch.bool))
            for t in range(n_candidates):
                slot = n + t
                cand[b, slot] = t
                positions[b, slot] = n
                allowed[b, slot, :n] = True
                allowed[b, slot, slot] = True
        for b in range(batch):  # padding rows attend to themselves so no softmax row is empty
            idx = torch.arange(lengths[b] + n_candidates, total)
            allowed[b, idx, idx] = True
        mask = torch.zeros((batch, 1, total, total), dtype=self.score_head.weight.dtype)
        mask.masked_fill_(~allowed.unsqueeze(1), torch.finfo(mask.dtype).min)  # additive 4D mask
        out = self.lm(
            inputs_embeds=self._embed(input_ids, cand),
            attention_mask=mask,
            position_ids=positions,
            output_hidden_states=True,
        )
        last = out.hidden_states[-1]  # (B, L, H)
        rows = torch.arange(batch).unsqueeze(1)
        slots = torch.tensor(lengths).unsqueeze(1) + torch.arange(n_candidates)  # (B, T)
        return self.score_head(last[rows, slots]).squeeze(-1)  # (B, T)
