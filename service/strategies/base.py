"""The one interface every strategy implements.

A strategy turns a `GatewayRequest` into a `Decision` (`decide`) and produces the reply
(`respond`). Routing strategies only decide and let the dispatcher relay; a strategy that
writes the answer itself (fusion) overrides `respond` and calls backends through the
dispatcher. Strategies never import FastAPI.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from service.inference import on_thread
from service.types import Decision, GatewayRequest, Reply

if TYPE_CHECKING:
    from service.backends.pool import ReplicaPool
    from service.cache import DecisionCache
    from service.dispatch import Dispatcher
    from service.metrics import Metrics


class StrategyConfigBase(BaseModel):
    """Base of every strategy's config block; `kind` selects the strategy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def backend_names(self) -> list[str]:
        """Every backend this strategy may dispatch to (checked against `backends` at load)."""
        raise NotImplementedError


@dataclass(frozen=True)
class StrategyDeps:
    """What the app hands every strategy factory, built once in the lifespan."""

    metrics: Metrics
    pool: ReplicaPool
    cache: DecisionCache | None = None
    # Artifact loaders by kind ("router", "switcher"): path -> model. Tests inject fakes here.
    loaders: Mapping[str, Callable[[str], Any]] = field(default_factory=dict)
    # The thread every model is loaded and run on (`service.inference`); None: each model's own, loaded here.
    inference: Executor | None = None

    async def load(self, kind: str, path: str) -> Any:
        """The model of `kind` at `path`, loaded on the inference thread."""
        loader = self.loaders[kind]
        return await on_thread(self.inference, lambda: loader(path))


class Strategy(ABC):
    kind: str = ""
    takes_tradeoff = False  # reads `GatewayRequest.tradeoff`, so its public name takes a `name:0.3` suffix

    async def start(self) -> None:
        """Load and warm whatever the strategy needs (called once in the app's lifespan)."""

    async def close(self) -> None:
        """Release what `start` acquired."""

    @abstractmethod
    async def decide(self, request: GatewayRequest) -> Decision:
        """Choose the backend and the rewritten body, without generating anything."""

    async def respond(self, request: GatewayRequest, dispatcher: Dispatcher) -> Reply:
        decision = await self.decide(request)
        self.record(decision)
        reply = await dispatcher.relay(request, decision)
        try:
            self.observe(decision, reply)
            reply = await self.follow_up(request, decision, reply, dispatcher)
        except BaseException:
            reply.close()  # a stream nobody will read
            raise
        reply.headers.update(decision_headers(decision))
        return reply

    def record(self, decision: Decision) -> None:
        """Count a decision that is served (a `/v1/route` dry run decides without it)."""

    def observe(self, decision: Decision, reply: Reply) -> None:
        """Look at a relayed reply (e.g. to count tokens); must not delay or buffer a stream."""

    async def follow_up(
        self, request: GatewayRequest, decision: Decision, reply: Reply, dispatcher: Dispatcher
    ) -> Reply:
        """The reply to send, given the relayed one (e.g. a cut answer asked again); default: unchanged."""
        return reply


def decision_headers(decision: Decision) -> dict[str, str]:
    """Response headers that make a decision visible to the client."""
    return {
        "x-switchyard-model": decision.backend,
        "x-switchyard-strategy": decision.strategy,
        "x-switchyard-cache": decision.cache,
        **decision.headers,
    }
