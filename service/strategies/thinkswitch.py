"""`thinkswitch`: one reasoning model, answering in long or short chain-of-thought as the switch decides."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from service.strategies.base import Strategy, StrategyConfigBase, StrategyDeps
from service.strategies.thinking import MODE_HEADER, ThinkingConfig, ThinkingSwitch
from service.strategies.usage import count_completion_tokens
from service.types import Decision, GatewayRequest, Reply

if TYPE_CHECKING:
    from service.dispatch import Dispatcher


class ThinkSwitchConfig(StrategyConfigBase):
    kind: Literal["thinkswitch"] = "thinkswitch"
    backend: str
    thinking: ThinkingConfig

    def backend_names(self) -> list[str]:
        return [self.backend]


class ThinkSwitchStrategy(Strategy):
    kind = "thinkswitch"

    def __init__(self, public_model: str, config: ThinkSwitchConfig, deps: StrategyDeps) -> None:
        self.public_model = public_model
        self.backend = config.backend
        self.switch = ThinkingSwitch(public_model, config.thinking, deps)
        self.metrics = deps.metrics

    async def start(self) -> None:
        await self.switch.start()

    async def close(self) -> None:
        self.switch.close()

    async def decide(self, request: GatewayRequest) -> Decision:
        body, mode, why, outcome = await self.switch.route(request)
        return Decision(backend=self.backend, body=body, strategy=self.kind, cache=outcome, reason=why,
                        headers={MODE_HEADER: mode})

    def record(self, decision: Decision) -> None:
        self.metrics.decisions.labels(self.public_model, self.kind, self.backend, decision.reason).inc()
        self.switch.record(decision)

    def observe(self, decision: Decision, reply: Reply) -> None:
        mode = decision.headers[MODE_HEADER]
        count_completion_tokens(reply, self.metrics.thinking_tokens.labels(self.public_model, mode))

    async def follow_up(
        self, request: GatewayRequest, decision: Decision, reply: Reply, dispatcher: Dispatcher
    ) -> Reply:
        return await self.switch.follow_up(request, decision, reply, dispatcher)
