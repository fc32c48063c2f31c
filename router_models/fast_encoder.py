"""An inference-only forward pass of the MiniLM (BERT) encoder, for the gateway's hot path.

The same arithmetic as `transformers`' BertModel, written as a dozen tensor calls per layer: query, key
and value share one matrix product, attention is PyTorch's fused `scaled_dot_product_attention`, and no
per-call mask or config plumbing runs. The weights are stored in one of three ways, chosen for the CPU:

- bfloat16, where the CPU has native bf16 matrix instructions (AVX-512 BF16 / AMX): the whole forward runs
  in bf16 and the matrix products take half the time; scores move by about 1e-3. The weights are reordered
  once into oneDNN's blocked layout (a plain bf16 product reorders them on every call) and the GELU of the
  feed-forward layer runs inside its product.
- float16 weights with float32 arithmetic, on other x86 CPUs (AVX2): FBGEMM multiplies float32 activations
  by prepacked float16 weights, widening them in-kernel. A single query is bound by streaming the 42 MB of
  float32 layer weights from memory; half of that fits in the cache. Outputs move by about 2e-4.
- float32 elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F


def inference_dtype() -> torch.dtype:
    """The weights' storage type for this CPU: bfloat16 where oneDNN runs it natively, float16 (with float32
    arithmetic) where FBGEMM runs, else float32. SWITCHYARD_INFERENCE_DTYPE=float32|float16|bfloat16
    overrides the choice."""
    chosen = os.environ.get("SWITCHYARD_INFERENCE_DTYPE", "auto")
    if chosen in ("float32", "float16", "bfloat16"):
        return getattr(torch, chosen)
    if chosen != "auto":
        raise ValueError(f"SWITCHYARD_INFERENCE_DTYPE must be auto, float32, float16 or bfloat16, not {chosen!r}")
    if _native_bf16():
        return torch.bfloat16
    return torch.float16 if _has_fbgemm() else torch.float32


def _native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 matrix products natively on this CPU."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _has_fbgemm() -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines


def _packs_bf16() -> bool:
    """Whether bfloat16 weights can be prepacked for oneDNN's linear (the op PyTorch's own compiler uses on
    CPU): native bf16 and the op in this build."""
    ops = torch.ops.mkldnn
    return _native_bf16() and hasattr(ops, "_linear_pointwise") and hasattr(ops, "_reorder_linear_weight")


@dataclass(frozen=True)
class _Norm:
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


@dataclass(frozen=True)
class _Dense:
    """x·Wᵀ + b with W in the activations' type."""

    weight: torch.Tensor
    bias: torch.Tensor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


@dataclass(frozen=True)
class _HalfWeights:
    """x·Wᵀ + b for float32 x with W prepacked in float16 (FBGEMM; the activations stay float32)."""

    packed: Any  # torch.classes.quantized.LinearPackedParamsBase

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, torch.ops.quantized.linear_dynamic_fp16(x, self.packed))


# oneDNN's (post-op, algorithm) pairs: none, and the exact (erf) GELU
NO_ACTIVATION = ("none", "")
EXACT_GELU = ("gelu", "none")


@dataclass(frozen=True)
class _PackedWeights:
    """x·Wᵀ + b with W prepacked in oneDNN's blocked layout, an activation (`EXACT_GELU`) fused in."""

    packed: torch.Tensor
    bias: torch.Tensor
    activation: tuple[str, str] = NO_ACTIVATION

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        post_op, algorithm = self.activation
        return cast(torch.Tensor, torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, post_op, [], algorithm))


@dataclass(frozen=True)
class _ThenGelu:
    """GELU(inner(x)), for the kinds that cannot fuse it."""

    inner: _Dense | _HalfWeights

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.inner(x))


Linear = _Dense | _HalfWeights | _PackedWeights | _ThenGelu


@dataclass(frozen=True)
class _Layer:
    qkv: Linear  # (3H, H): query, key and value stacked
    out: Linear
    attention_norm: _Norm
    up: Linear  # with the GELU
    down: Linear
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
        self.weight_dtype = dtype or inference_dtype()  # how the layers' matrices are stored
        if self.weight_dtype == torch.float16 and not _has_fbgemm():
            raise ValueError("float16 weights need PyTorch's FBGEMM kernels (x86 CPUs): use float32 or bfloat16")
        self.dtype = torch.float32 if self.weight_dtype == torch.float16 else self.weight_dtype  # arithmetic
        self.prepacked = self.weight_dtype == torch.bfloat16 and _packs_bf16()  # oneDNN's blocked weights
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

        def linear(*denses: nn.Linear, gelu: bool = False) -> Linear:
            weight = torch.cat([dense.weight for dense in denses]).detach().float().contiguous()
            bias = torch.cat([dense.bias for dense in denses]).detach().float()
            if self.prepacked:
                packed = torch.ops.mkldnn._reorder_linear_weight(weight.to(self.dtype))
                return _PackedWeights(packed, bias.to(self.dtype), EXACT_GELU if gelu else NO_ACTIVATION)
            unfused: _Dense | _HalfWeights
            if self.weight_dtype == torch.float16:
                unfused = _HalfWeights(torch.ops.quantized.linear_prepack_fp16(weight, bias))
            else:
                unfused = _Dense(weight.to(self.dtype), bias.to(self.dtype))
            return _ThenGelu(unfused) if gelu else unfused

        return _Layer(
            qkv=linear(own.query, own.key, own.value),
            out=linear(attention.output.dense),
            attention_norm=_norm(attention.output.LayerNorm, self.dtype),
            up=linear(layer.intermediate.dense, gelu=True),
            down=linear(layer.output.dense),
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
            qkv = layer.qkv(x)  # (B, L, 3H)
            q, k, v = qkv.view(batch, length, 3, self.heads, head_width).permute(2, 0, 3, 1, 4)
            if first_only and depth == len(self.layers) - 1:
                q, x = q[:, :, :1], x[:, :1]
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, heads, L', d)
            attended = attended.transpose(1, 2).reshape(batch, x.shape[1], width)
            x = layer.attention_norm(layer.out(attended) + x)
            x = layer.output_norm(layer.down(layer.up(x)) + x)
        return x.float()
