"""Configuration of every strategy, as one discriminated union keyed by `kind`.

A public model's `strategy:` block is validated into exactly one of these. Each strategy
module owns its config class; this module only gathers them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class StrategyConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def backend_names(self) -> list[str]:
        """Every backend this strategy may dispatch to (checked against `backends` at load)."""
        raise NotImplementedError


class DirectConfig(StrategyConfigBase):
    """Relay to one backend model."""

    kind: Literal["direct"] = "direct"
    backend: str

    def backend_names(self) -> list[str]:
        return [self.backend]


# Add each new strategy's config to this union (pydantic picks the member by `kind`).
StrategyConfig = DirectConfig
