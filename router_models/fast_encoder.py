"""An inference-only forward pass of the MiniLM (BERT) encoder, for the gateway's hot path.

The same arithmetic as `transformers`' BertModel, written as a dozen tensor calls per layer: query, key
and value share one matrix product, attention is PyTorch's fused `scaled_dot_product_attention`, and no
per-call mask or config plumbing runs. In bfloat16 (used where the CPU has native bf16 matrix
instructions) the matrix products take half the time; scores move by about 1e-3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F


def inference_dtype() -> torch.dtype:
    """bfloat16 where oneDNN runs it natively (AVX-512 BF16 / AMX), else float32; the environment
    variable SWITCHYARD_INFERENCE_DTYPE=float32|bfloat16 overrides the choice."""
    chosen = os.environ.get("SWITCHYARD_INFERENCE_DTYPE", "auto")
    if chosen in ("float32", "bfloat16"):
        return getattr(torch, chosen)
    if chosen != "auto":
        raise ValueError(f"SWITCHYARD_INFERENCE_DTYPE must be auto, float32 or bfloat16, not {chosen!r}")
    try:
        native = bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else torch.float32


@dataclass(frozen=True)
class _Norm:
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


@dataclass(frozen=True)
class _Layer:
    qkv_weight: torch.Tensor  # (3H, H): query, key and value stacked
    qkv_bias: torch.Tensor
    out_weight: torch.Tensor
    out_bias: torch.Tensor
    attention_norm: _Norm
    up_weight: torch.Tensor
    up_bias: torch.Tensor
    down_weight: torch.Tensor
    down_bias: torch.Tensor
    output_norm: _Norm


def _norm(module: nn.LayerNorm, dtype: torch.dtype) -> _Norm:
    return _Norm(module.weight.detach().to(dtype), module.bias.detach().to(dtype), float(module.eps))


class FastEncoder:
    """A frozen copy of a BertModel's weights with a lean forward: `(B, L, H)` input embeddings
    (word embeddings, or anything in their place) -> `(B, L, H)` final hidden states, in float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype | None = None) -> None:
        bert = cast(Any, model)  # a transformers BertModel
        config = bert.config
        if config.hidden_act != "gelu" or getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise ValueError("FastEncoder supports BERT with absolute positions and exact GELU only")
        self.dtype = dtype or inference_dtype()
        self.heads = int(config.num_attention_heads)
        emb = bert.embeddings
        self.words = emb.word_embeddings.weight.detach().to(self.dtype)
        self.positions = emb.position_embeddings.weight.detach().to(self.dtype)
        self.token_type = emb.token_type_embeddings.weight.detach()[0].to(self.dtype)
        self.embedding_norm = _norm(emb.LayerNorm, self.dtype)
        self.layers = [self._layer(layer) for layer in bert.encoder.layer]

    def _layer(self, module: nn.Module) -> _Layer:
        layer = cast(Any, module)  # a transformers BertLayer
        attention = layer.attention
        own = attention.self

        def frozen(t: torch.Tensor) -> torch.Tensor:
            return t.detach().to(self.dtype).contiguous()

        return _Layer(
            qkv_weight=frozen(torch.cat([own.query.weight, own.key.weight, own.value.weight])),
            qkv_bias=frozen(torch.cat([own.query.bias, own.key.bias, own.value.bias])),
            out_weight=frozen(attention.output.dense.weight),
            out_bias=frozen(attention.output.dense.bias),
            attention_norm=_norm(attention.output.LayerNorm, self.dtype),
            up_weight=frozen(layer.intermediate.dense.weight),
            up_bias=frozen(layer.intermediate.dense.bias),
            down_weight=frozen(layer.output.dense.weight),
            down_bias=frozen(layer.output.dense.bias),
            output_norm=_norm(layer.output.LayerNorm, self.dtype),
        )

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L, H) word embeddings, the usual input."""
        return F.embedding(input_ids, self.words)

    @torch.inference_mode()
    def __call__(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        first_only: bool = False,
    ) -> torch.Tensor:
        """`first_only`: return only the first token's states, (B, 1, H), skipping the last layer's work
        for the other rows (what a [CLS] head reads)."""
        batch, length, width = inputs_embeds.shape
        positions = self.positions[:length].unsqueeze(0) if position_ids is None else self.positions[position_ids]
        x = self.embedding_norm(inputs_embeds.to(self.dtype) + self.token_type + positions)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L): True where a key may be attended
        head_width = width // self.heads
        for depth, layer in enumerate(self.layers):
            qkv = F.linear(x, layer.qkv_weight, layer.qkv_bias)  # (B, L, 3H)
            q, k, v = qkv.view(batch, length, 3, self.heads, head_width).permute(2, 0, 3, 1, 4)
            if first_only and depth == len(self.layers) - 1:
                q, x = q[:, :, :1], x[:, :1]
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, L', d)
            attended = attended.transpose(1, 2).reshape(batch, x.shape[1], width)
            x = layer.attention_norm(F.linear(attended, layer.out_weight, layer.out_bias) + x)
            up = F.gelu(F.linear(x, layer.up_weight, layer.up_bias))
            x = layer.output_norm(F.linear(up, layer.down_weight, layer.down_bias) + x)
        return x.float()
