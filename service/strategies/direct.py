"""`direct`: relay to one configured backend model."""

from __future__ import annotations

from typing import Literal

from service.strategies.base import Strategy, StrategyConfigBase
from service.types import Decision, GatewayRequest


class DirectConfig(StrategyConfigBase):
    """Relay to one backend model."""

    kind: Literal["direct"] = "direct"
    backend: str

    def backend_names(self) -> list[str]:
        return [self.backend]


class DirectStrategy(Strategy):
    kind = "direct"

    def __init__(self, public_model: str, config: DirectConfig) -> None:
        self.public_model = public_model
        self.backend = config.backend

    async def decide(self, request: GatewayRequest) -> Decision:
        return Decision(backend=self.backend, body=request.body, strategy=self.kind, reason="direct")
