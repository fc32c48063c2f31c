"""The interface of a decision cache, and the accounting every implementation shares."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from service.metrics import Metrics
from service.types import CacheOutcome


class DecisionCache(ABC):
    """Maps a key to a JSON-able value. Lookups never raise: trouble reads as a miss (`error`)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def start(self) -> None:
        """Connect (if there is anything to connect to)."""

    async def close(self) -> None:
        """Release connections."""

    async def get(self, key: str) -> tuple[Any | None, CacheOutcome]:
        started = time.perf_counter()
        try:
            value = await self._get(key)
            outcome: CacheOutcome = "miss" if value is None else "hit"
        except Exception as error:  # noqa: BLE001 - any cache trouble fails open
            self._trouble("get", error)
            value, outcome = None, "error"
        self.metrics.cache_duration.labels("get").observe(time.perf_counter() - started)
        self.metrics.cache_requests.labels(outcome).inc()
        return value, outcome

    async def set(self, key: str, value: Any) -> None:
        started = time.perf_counter()
        try:
            await self._set(key, value)
        except Exception as error:  # noqa: BLE001 - any cache trouble fails open
            self._trouble("set", error)
        self.metrics.cache_duration.labels("set").observe(time.perf_counter() - started)

    def _trouble(self, operation: str, error: Exception) -> None:
        """Called when an operation failed; the request goes on without the cache."""

    @abstractmethod
    async def _get(self, key: str) -> Any | None: ...

    @abstractmethod
    async def _set(self, key: str, value: Any) -> None: ...


async def cached(cache: DecisionCache | None, key: str,
                 compute: Callable[[], Awaitable[Any]]) -> tuple[Any, CacheOutcome]:
    """The cached value for `key`, or `compute()`'s result, stored for next time; with the cache outcome."""
    if cache is None:
        return await compute(), "off"
    value, outcome = await cache.get(key)
    if value is None:
        value = await compute()
        if outcome == "miss":  # after an error the cache is not asked again for this request
            await cache.set(key, value)
    return value, outcome
