"""The `Gateway`: the one object that owns everything a request needs.

Created by the app factory, started and closed in the server's lifespan, and handed to the
HTTP handlers explicitly. Nothing in Switchyard is found through module globals.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from router_models.errors import ArtifactError
from service.backends.discovery import DnsDiscovery, Resolver, resolve_addresses
from service.backends.monitor import ReplicaMonitor
from service.backends.pool import ReplicaPool
from service.cache import DecisionCache, MemoryCache, RedisCache
from service.config import CacheSettings, ConfigError, Settings
from service.dispatch import Dispatcher
from service.errors import InvalidRequest, ModelNotFound
from service.inference import inference_thread
from service.metrics import Metrics
from service.strategies import Strategy, build_strategy
from service.strategies.base import StrategyDeps
from service.upstream import UpstreamClient
from service.validation import Limits

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved public model name: its strategy and the trade-off given by a `name:0.3` suffix."""

    public_model: str
    strategy: Strategy
    tradeoff: float | None


# Where each kind of learned artifact is loaded from: "module:function" taking the artifact path.
DEFAULT_LOADERS = {
    "router": "router_models:load_router",
    "switcher": "router_models.thinkswitch:load_switcher",
}


def _import_loader(spec: str) -> Callable[[str], Any]:
    module, function = spec.split(":")

    def load(path: str) -> Any:
        return getattr(importlib.import_module(module), function)(path)

    return load


def build_cache(settings: CacheSettings, metrics: Metrics) -> DecisionCache:
    """Redis when `redis_url` is set (shared by every gateway replica), else an in-process LRU."""
    if settings.redis_url:
        return RedisCache(metrics, settings.redis_url, settings.ttl_s, settings.timeout_s,
                          retry_after_s=settings.retry_after_s, password=settings.redis_password)
    return MemoryCache(metrics, settings.max_entries, settings.ttl_s)


class Gateway:
    def __init__(self, settings: Settings, metrics: Metrics | None = None, *,
                 cache: DecisionCache | None = None,
                 loaders: Mapping[str, Callable[[str], Any]] | None = None,
                 resolve: Resolver = resolve_addresses) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.cache = cache or build_cache(settings.cache, self.metrics)
        self.loaders = {kind: _import_loader(spec) for kind, spec in DEFAULT_LOADERS.items()}
        self.loaders.update(loaders or {})
        self.pool = ReplicaPool(settings.backends, settings.dispatch)
        self.limits = Limits(settings.server.max_tokens_limit, settings.server.max_n)
        self.strategies: dict[str, Strategy] = {}
        self._client: UpstreamClient | None = None
        self._monitor: ReplicaMonitor | None = None
        self._discovery: DnsDiscovery | None = None
        self._resolve = resolve
        self._dispatcher: Dispatcher | None = None
        self._inference: ThreadPoolExecutor | None = None  # every model loads and runs on it (`service.inference`)

    async def start(self) -> None:
        """Connect, start health checks and load every public model's artifacts; a model whose artifact
        cannot be loaded raises `ConfigError` naming the model and the path. After a failure, `close`
        releases what had started."""
        self._client = UpstreamClient()
        self._dispatcher = Dispatcher(self.settings, self.pool, self._client, self.metrics)
        api_keys = {b.name: b.api_key for b in self.settings.backends}
        self._monitor = ReplicaMonitor(self.pool, self._client, self.metrics, api_keys)
        self._discovery = DnsDiscovery(self.settings.backends, self.pool, self._monitor, self._resolve)
        await self._discovery.resolve_all()
        await self._monitor.start()
        self._discovery.start()
        await self.cache.start()
        self._inference = inference_thread()
        deps = StrategyDeps(metrics=self.metrics, pool=self.pool, cache=self.cache, loaders=self.loaders,
                            inference=self._inference)
        for model in self.settings.models:
            strategy = build_strategy(model.name, model.strategy, deps)
            try:
                await strategy.start()
            except BaseException as error:  # release what it started (threads too); `close` does the rest
                await strategy.close()
                if isinstance(error, ArtifactError):  # the config names a path that holds no usable artifact
                    raise ConfigError(f"models.{model.name}: {error}") from error
                raise
            self.strategies[model.name] = strategy
        log.info("gateway ready: %d public models over %d backends (%d replicas); decision cache: %s; "
                 "API keys %s", len(self.strategies), len(self.settings.backends),
                 len(self.pool.all()), self.cache.describe(),
                 "required" if self.settings.auth.api_key_hashes else "not required")

    async def close(self) -> None:
        for strategy in self.strategies.values():
            await strategy.close()
        if self._discovery is not None:
            await self._discovery.close()
        if self._monitor is not None:
            await self._monitor.close()
        await self.cache.close()
        if self._client is not None:
            await self._client.close()
        if self._inference is not None:  # a batch queued on it still runs: its callers get their answer
            self._inference.shutdown(wait=False)
            self._inference = None

    @property
    def dispatcher(self) -> Dispatcher:
        """The dispatcher, available once the gateway has started."""
        if self._dispatcher is None:
            raise RuntimeError("the gateway has not started")
        return self._dispatcher

    def resolve(self, model: str) -> Route:
        """Find the strategy of a public model name, accepting a `name:tradeoff` suffix where the strategy
        reads a trade-off."""
        strategy = self.strategies.get(model)
        if strategy is not None:
            return Route(model, strategy, None)
        name, _, suffix = model.rpartition(":")
        strategy = self.strategies.get(name)
        if strategy is None:
            raise ModelNotFound(f"the model {model!r} does not exist", param="model")
        if not strategy.takes_tradeoff:
            raise ModelNotFound(f"the model {model!r} does not exist ({name!r} takes no trade-off suffix)",
                                param="model")
        try:
            tradeoff = float(suffix)
        except ValueError:
            raise InvalidRequest(f"model suffix {suffix!r} must be a number in [0, 1]", param="model") from None
        if not 0.0 <= tradeoff <= 1.0:
            raise InvalidRequest(f"model suffix {suffix!r} must be a number in [0, 1]", param="model")
        return Route(name, strategy, tradeoff)

    def readiness(self) -> dict[str, bool]:
        """For each public model: can at least one of its backends take a request now?"""
        return {
            model.name: any(self.pool.has_available(b) for b in model.strategy.backend_names())
            for model in self.settings.models
        }
