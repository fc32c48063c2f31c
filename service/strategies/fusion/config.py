"""The `fusion` strategy's config block."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from service.strategies.base import StrategyConfigBase
from service.types import FusionVariant


class FusionConfig(StrategyConfigBase):
    """Cool-Fusion over two or more member backends (any vocabularies)."""

    kind: Literal["fusion"] = "fusion"
    members: list[str] = Field(min_length=2, description="Backend names that write the answer together.")
    variant: FusionVariant = Field("cool", description="`cool`: fuse segment by segment; `cool+r`: also let each "
                                                 "member answer alone and rerank the N+1 answers.")
    segment_tokens: int = Field(16, ge=2, le=64, description="Tokens each member drafts per step; the "
                                "segment is cut back to the last word boundary all tokenizers share.")
    speculate: bool = Field(True, description="Draft the next step for every candidate while the candidates "
                            "are scored, so scoring costs no extra wall time (more backend work).")
    scoring: Literal["auto", "echo", "forced"] = Field(
        "auto", description="How members score candidates: `echo` (prompt log-probabilities; recomputes the "
        "whole context each step), `forced` (one-token continuations read from the prefix cache), or `auto` "
        "(forced once a member's context reaches `forced_from_tokens`).")
    forced_from_tokens: int = Field(64, ge=0, description="Context length (member tokens) from which `auto` "
                                    "scores by forced tokens.")
    max_tokens: int = Field(256, ge=1, description="Answer length when the request gives none.")
    member_timeout_s: float = Field(60.0, gt=0, description="A member call slower than this drops the "
                                    "member for the rest of the answer.")
    total_s: float = Field(600.0, gt=0, description="The whole answer's limit: a buffered one is then a 504, a "
                           "stream ends with a timeout error event.")

    def backend_names(self) -> list[str]:
        return list(self.members)

    @model_validator(mode="after")
    def _unique(self) -> FusionConfig:
        if len(set(self.members)) != len(self.members):
            raise ValueError("fusion members must be unique")
        return self
