"""`direct`: relay to one configured backend model."""

from __future__ import annotations

from service.strategies.base import Strategy
from service.strategies.configs import DirectConfig
from service.types import Decision, GatewayRequest


class DirectStrategy(Strategy):
    kind = "direct"

    def __init__(self, config: DirectConfig) -> None:
        self.backend = config.backend

    async def decide(self, request: GatewayRequest) -> Decision:
        return Decision(backend=self.backend, body=request.body, strategy=self.kind)
