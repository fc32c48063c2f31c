"""`lookahead`: a public model (e.g. `auto`) that routes each request to the candidate a learned router
expects to answer best, aware of cost and load.

Decision rule, on the router's per-candidate quality q (probabilities in [0, 1]):
1. quality: the candidates with q ≥ max(q) − tradeoff are acceptable; the cheapest acceptable one wins
   (ties: higher q). tradeoff 0 is pure quality routing; 1 always takes the cheapest.
2. load: if the winner's replicas are all saturated or down, take the best other acceptable candidate
   within `load_margin` that can take the request now, instead of queueing behind the busy one.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field, model_validator

from service.inference import BatchedInference
from service.strategies.base import Strategy, StrategyConfigBase, StrategyDeps
from service.strategies.cached_scores import CachedScores
from service.strategies.query import query_text
from service.strategies.thinking import MODE_HEADER, ThinkingConfig, ThinkingSwitch
from service.strategies.usage import count_completion_tokens
from service.throttled_log import ThrottledLog
from service.types import CacheOutcome, Decision, GatewayRequest, Reply

if TYPE_CHECKING:
    from service.dispatch import Dispatcher

log = logging.getLogger(__name__)


class Router(Protocol):
    """What `router_models.load_router` returns."""

    kind: str
    candidates: list[str]
    version: str

    def score(self, queries: list[str]) -> Any: ...  # (N, len(candidates)) array, higher = better


class Candidate(StrategyConfigBase):
    backend: str
    cost: float = Field(1.0, ge=0, description="Relative cost of answering with this candidate.")
    router_name: str | None = Field(None, description="The candidate's name in the router artifact "
                                                      "(default: the backend name).")
    thinking: ThinkingConfig | None = Field(None, description="For a reasoning model: switch its mode too.")

    @property
    def name_in_router(self) -> str:
        return self.router_name or self.backend


class LookaheadConfig(StrategyConfigBase):
    kind: Literal["lookahead"] = "lookahead"
    router: str = Field(description="Router artifact directory (from `switchyard train`).")
    candidates: list[Candidate] = Field(min_length=2)
    tradeoff: float = Field(0.0, ge=0, le=1, description="Default quality margin for a cheaper candidate.")
    load_margin: float = Field(0.1, ge=0, le=1, description="Quality margin for a less busy candidate.")
    max_batch: int = Field(32, ge=1)

    def backend_names(self) -> list[str]:
        return [c.backend for c in self.candidates]

    @model_validator(mode="after")
    def _unique(self) -> LookaheadConfig:
        if len({c.backend for c in self.candidates}) != len(self.candidates):
            raise ValueError("candidate backends must be unique")
        return self

    def quality_version(self) -> str:
        """What the cached quality vectors depend on besides the router: which router columns, in which
        order. Costs, `tradeoff` and the rest act after the cache, so changing them keeps its entries."""
        columns = "\x1f".join(c.name_in_router for c in self.candidates)
        return hashlib.blake2b(columns.encode(), digest_size=6).hexdigest()


def as_quality(scores: Sequence[float]) -> list[float]:
    """Router scores as probabilities: logits (anything outside [0, 1]) go through a sigmoid."""
    values = [float(s) for s in scores]
    if all(0.0 <= v <= 1.0 for v in values):
        return values
    return [1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, v)))) for v in values]


def choose(quality: Sequence[float], costs: Sequence[float], tradeoff: float,
           can_serve: Callable[[int], bool], load_margin: float) -> tuple[int, str]:
    """Index of the chosen candidate and why: quality, cost or load (see the module docstring)."""
    best_quality = max(quality)
    by_preference = sorted(range(len(quality)), key=lambda i: (costs[i], -quality[i]))
    acceptable = [i for i in by_preference if quality[i] >= best_quality - tradeoff - 1e-12]
    top = max(range(len(quality)), key=lambda i: quality[i])
    chosen = acceptable[0]
    reason = "quality" if quality[chosen] >= quality[top] else "cost"
    if can_serve(chosen):
        return chosen, reason
    fallback_margin = max(tradeoff, load_margin)
    ranked = sorted(range(len(quality)), key=lambda i: (-quality[i], costs[i]))  # ties: the cheaper
    for index in ranked:
        if index != chosen and quality[index] >= best_quality - fallback_margin - 1e-12 and can_serve(index):
            return index, "load"
    return chosen, reason


class LookaheadStrategy(Strategy):
    kind = "lookahead"
    takes_tradeoff = True

    def __init__(self, public_model: str, config: LookaheadConfig, deps: StrategyDeps) -> None:
        self.public_model = public_model
        self.config = config
        self.deps = deps
        self.quality_version = config.quality_version()
        self.costs = [c.cost for c in config.candidates]
        self.router: Router | None = None
        self._infer: BatchedInference | None = None
        self._columns: list[int] = []
        self._failures = ThrottledLog(log)
        self._quality: CachedScores | None = None  # the router's quality of each candidate, from `start`
        # Reasoning-mode switches of the candidates that are reasoning models, by backend.
        self.switches = {c.backend: ThinkingSwitch(public_model, c.thinking, deps)
                         for c in config.candidates if c.thinking is not None}

    async def start(self) -> None:
        self.router = await self.deps.load("router", self.config.router)
        names = list(self.router.candidates)
        missing = [c.name_in_router for c in self.config.candidates if c.name_in_router not in names]
        if missing:
            raise ValueError(f"router {self.config.router} has no candidates {missing}; it knows {names}")
        # Column of each configured candidate in the router's output.
        self._columns = [names.index(c.name_in_router) for c in self.config.candidates]
        router = self.router
        self._infer = BatchedInference(lambda queries: router.score(queries), max_batch=self.config.max_batch,
                                       name="router", executor=self.deps.inference)
        columns = self._columns
        self._quality = CachedScores(
            self._infer, self.deps.cache, lambda row: as_quality([row[c] for c in columns]), field="quality",
            count=len(columns), strategy=self.kind, config_version=self.quality_version,
            artifact_version=router.version)
        await self._infer.warm()
        for switch in self.switches.values():
            await switch.start()

    async def close(self) -> None:
        if self._infer is not None:
            self._infer.close()
        for switch in self.switches.values():
            switch.close()

    async def decide(self, request: GatewayRequest) -> Decision:
        """The candidate to answer; where the router fails, the default choice (`fallback`) and a warning
        logged at most every 30 s."""
        started = time.perf_counter()
        query = query_text(request)
        quality: list[float] | None = None
        outcome: CacheOutcome = "off"
        failed = False
        if query is not None:
            try:
                assert self._quality is not None, "decide before start"
                quality, outcome = await self._quality(query)
            except Exception as error:  # noqa: BLE001 - any router trouble falls back to the default choice
                self._failures.warning("router of %s failed (%s: %s); taking the default candidate",
                                       self.public_model, type(error).__name__, error)
                failed = True
        candidates = self.config.candidates
        pool = self.deps.pool

        def can_serve(index: int) -> bool:
            return pool.can_take(candidates[index].backend)

        tradeoff = self.config.tradeoff if request.tradeoff is None else request.tradeoff
        if quality is None:  # nothing to read (token-id prompt) or no router: the cheapest that can serve
            quality = [0.0] * len(candidates)
            index, reason = choose(quality, self.costs, 1.0, can_serve, 1.0)
            reason = "fallback" if failed else "default"
        else:
            index, reason = choose(quality, self.costs, tradeoff, can_serve, self.config.load_margin)
        backend = candidates[index].backend
        self.deps.metrics.decision_duration.labels(self.kind, outcome).observe(time.perf_counter() - started)
        body, headers = request.body, dict[str, str]()
        switch = self.switches.get(backend)
        if switch is not None:
            body, mode, _, _ = await switch.route(request)
            headers[MODE_HEADER] = mode
        return Decision(backend=backend, body=body, strategy=self.kind, cache=outcome, reason=reason,
                        scores={c.backend: round(q, 6) for c, q in zip(candidates, quality, strict=True)},
                        headers=headers)

    def record(self, decision: Decision) -> None:
        self.deps.metrics.decisions.labels(self.public_model, self.kind, decision.backend, decision.reason).inc()
        switch = self.switches.get(decision.backend)
        if switch is not None:
            switch.record(decision)

    def observe(self, decision: Decision, reply: Reply) -> None:
        mode = decision.headers.get(MODE_HEADER)
        if mode is not None:
            count_completion_tokens(reply, self.deps.metrics.thinking_tokens.labels(self.public_model, mode))

    async def follow_up(
        self, request: GatewayRequest, decision: Decision, reply: Reply, dispatcher: Dispatcher
    ) -> Reply:
        switch = self.switches.get(decision.backend)
        return reply if switch is None else await switch.follow_up(request, decision, reply, dispatcher)
