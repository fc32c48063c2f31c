"""Training loop shared by the masked Lookahead router and MLC: BCE routing loss + λ·MLM loss on the
hidden response slots, end-masking curriculum, AdamW with warm-up and cosine decay, resumable
checkpoints and best-on-validation selection."""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from router_models.data import RoutingTable
from router_models.encoder import load_encoder, load_tokenizer
from router_models.errors import InputError
from router_models.fast_encoder import FastEncoder
from router_models.lookahead.config import LookaheadConfig
from router_models.lookahead.inputs import (
    IGNORE,
    SpecialIds,
    build_batch,
    tokenize_queries,
    tokenize_responses,
)
from router_models.lookahead.masked import LookaheadMasked
from router_models.metrics import mean_mu_n

CHECKPOINT = "checkpoint.pt"


def layout_ids(tokenizer: PreTrainedTokenizerBase) -> SpecialIds:
    """Special token ids for `build_batch` (the placeholder under ID slots is [MASK]; its embedding is
    replaced by the model-ID embedding)."""
    return SpecialIds(
        cls_id=int(tokenizer.cls_token_id),
        sep_id=int(tokenizer.sep_token_id),
        pad_id=int(tokenizer.pad_token_id),
        placeholder_id=int(tokenizer.mask_token_id),
    )


@torch.inference_mode()
def score_token_ids(
    model: LookaheadMasked,
    query_ids: list[list[int]],
    n_candidates: int,
    special: SpecialIds,
    fast: FastEncoder | None = None,
) -> np.ndarray:
    """(Q,) tokenised queries -> (Q, T) routing logits; every response slot hidden, as at inference.
    With `fast` (a `FastEncoder` copy of the model's encoder) the encoder runs through it."""
    config = model.config
    was_training = model.training
    model.eval()
    order = sorted(range(len(query_ids)), key=lambda i: len(query_ids[i]))  # similar lengths pad less
    out = np.zeros((len(query_ids), n_candidates), dtype=np.float32)
    for start in range(0, len(order), config.inference_batch_size):
        rows = order[start : start + config.inference_batch_size]
        batch = build_batch(
            [query_ids[i] for i in rows], n_candidates, config.block_size, config.block_size, **special
        )
        logits = model.fast_route_logits(batch, fast) if fast else model.route_logits(model(batch))
        out[rows] = logits.float().numpy()
    model.train(was_training)
    return out


def _schedule(config: LookaheadConfig, total: int) -> object:
    warmup = max(1, int(config.warmup_frac * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def train_masked(
    train: RoutingTable,
    config: LookaheadConfig,
    val: RoutingTable | None = None,
    workdir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
) -> LookaheadMasked:
    """Fit a masked Lookahead (or, with block_size 0, an MLC) network; return the best state on
    validation (the last one without validation data)."""
    torch.manual_seed(config.seed)
    tokenizer = load_tokenizer()
    special = layout_ids(tokenizer)
    n_cand = len(train.candidates)
    model = LookaheadMasked(config, n_cand, cast(PreTrainedModel, load_encoder())).train()

    rng = np.random.default_rng(config.seed)
    rows = np.arange(len(train))
    if config.max_train_queries and len(rows) > config.max_train_queries:
        rows = np.sort(rng.choice(rows, config.max_train_queries, replace=False))
    query_ids = tokenize_queries(tokenizer, [train.prompts[i] for i in rows], config.max_query_tokens)
    response_ids = tokenize_responses(tokenizer, [train.responses[i] for i in rows], config.block_size)
    labels = torch.from_numpy(train.labels[rows])  # (N, T)
    if val is not None and config.max_val_queries and len(val) > config.max_val_queries:
        val = val.subset(sorted(rng.choice(len(val), config.max_val_queries, replace=False).tolist()))
    val_ids = (
        tokenize_queries(tokenizer, val.prompts, config.max_query_tokens)
        if val is not None and len(val)
        else None
    )

    per_epoch = math.ceil(len(rows) / config.batch_size)
    total = max(1, math.ceil(per_epoch * config.epochs))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total))  # type: ignore[arg-type]
    eval_every = config.eval_every or per_epoch
    step, best_score, best_state = 0, -math.inf, None

    checkpoint_path = workdir / CHECKPOINT if workdir is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        try:
            saved = torch.load(checkpoint_path, weights_only=True)  # tensors and plain values: nothing runs
        except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
            why = "holds more than tensors and plain values" if isinstance(error, pickle.UnpicklingError) else (
                "is not a readable checkpoint")
            raise InputError(f"{checkpoint_path}: {why}; remove it or drop --resume") from None
        if saved["config"] != asdict(config):
            changed = sorted(k for k, v in asdict(config).items() if saved["config"].get(k) != v)
            raise InputError(
                f"{checkpoint_path}: written with another {', '.join(changed)}; remove it or drop --resume"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step, best_score, best_state = saved["step"], saved["best_score"], saved["best_state"]
        if "torch_rng" in saved:  # absent from checkpoints of earlier versions
            torch.set_rng_state(saved["torch_rng"])

    def validate() -> None:
        nonlocal best_score, best_state
        if val_ids is None or val is None:
            return
        choices = score_token_ids(model, val_ids, n_cand, special).argmax(axis=1)
        score = mean_mu_n(val.scores, choices, val.benchmarks)
        bar.write(f"step {step}: validation µn {score:.2f}")
        if score > best_score:
            best_score, best_state = score, {k: v.detach().clone() for k, v in model.state_dict().items()}

    def save_checkpoint() -> None:
        if checkpoint_path is None:
            return
        checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint_path.with_suffix(".tmp")
        torch.save(
            {
                "config": asdict(config),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "step": step,
                "best_score": best_score,
                "best_state": best_state,
                "torch_rng": torch.get_rng_state(),  # dropout and slot sampling continue where they were
            },
            tmp,
        )
        os.replace(tmp, checkpoint_path)  # a crash mid-write never leaves a broken checkpoint

    bar = tqdm(
        total=total,
        initial=step,
        desc=f"train {'lookahead' if config.block_size else 'mlc'}",
        disable=not progress,
        dynamic_ncols=True,
    )
    while step < total:
        epoch, offset = divmod(step, per_epoch)
        order = np.random.default_rng(config.seed + epoch).permutation(len(rows))
        batch_rows = order[offset * config.batch_size : (offset + 1) * config.batch_size]
        hidden = config.hidden_slots(step / total)
        batch = build_batch(
            [query_ids[i] for i in batch_rows],
            n_cand,
            config.block_size,
            hidden,
            **special,
            responses=response_ids[batch_rows],
        )
        states = model(batch)  # (B, L, H)
        route_loss = F.binary_cross_entropy_with_logits(model.route_logits(states), labels[batch_rows])
        loss = route_loss
        postfix = {"loss": f"{route_loss.item():.3f}"}
        picked = batch.slot_targets != IGNORE  # (B, L)
        if int(picked.sum()) > config.mlm_max_slots:
            keep = torch.randperm(int(picked.sum()))[: config.mlm_max_slots]
            where = picked.nonzero()[keep]
            picked = torch.zeros_like(picked)
            picked[where[:, 0], where[:, 1]] = True
        if config.block_size and config.mlm_weight > 0 and bool(picked.any()):
            mlm_loss = F.cross_entropy(model.mlm_logits(states[picked]), batch.slot_targets[picked])
            loss = route_loss + config.mlm_weight * mlm_loss
            postfix |= {"mlm": f"{mlm_loss.item():.2f}", "hidden": f"{hidden}/{config.block_size}"}
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        step += 1
        bar.update(1)
        bar.set_postfix(postfix)
        if step % eval_every == 0 or step == total:
            validate()
        if step % config.checkpoint_every == 0 or step == total:
            save_checkpoint()
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()
