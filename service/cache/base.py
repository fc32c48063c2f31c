"""The interface of a decision cache, and the accounting every implementation shares."""

from __future__ import annotations

import asyncio
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
        # Values being computed, by key: concurrent misses of one key share one computation.
        self.computing: dict[str, Flight] = {}

    async def start(self) -> None:
        """Connect (if there is anything to connect to)."""

    def describe(self) -> str:
        """What the cache is, for the start-up log."""
        return type(self).__name__

    async def close(self) -> None:
        """Release connections."""

    async def get(self, key: str, valid: Callable[[Any], bool] | None = None) -> tuple[Any | None, CacheOutcome]:
        """The value stored under `key`; one that is not `valid` (another shape than the caller's, from another
        version or written by hand) reads as a miss, so it is computed again and overwritten."""
        started = time.perf_counter()
        try:
            value = await self._get(key)
            if value is not None and valid is not None and not valid(value):
                value = None
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


async def cached(cache: DecisionCache | None, key: str, compute: Callable[[], Awaitable[Any]],
                 valid: Callable[[Any], bool] | None = None) -> tuple[Any, CacheOutcome]:
    """The cached value for `key` if it is `valid`, or `compute()`'s result, stored for next time; with the
    cache outcome.

    Concurrent misses of one key share one computation (reported as hits). It runs as a task of its own:
    one caller going away does not cancel it for the others, and it is cancelled when every caller has gone.
    The value is stored after the callers have it, not before: a slow cache delays no decision, and callers
    of the key while it is being written share the computed value.
    """
    if cache is None:
        return await compute(), "off"
    value, outcome = await cache.get(key, valid)
    if value is not None:
        return value, outcome
    flight = cache.computing.get(key)
    if flight is not None:  # a miss shares the computation (a hit of sorts); an error stays an error
        flight.store = flight.store or outcome == "miss"  # begun after a failed lookup: stored all the same
        return await flight.join(), "hit" if outcome == "miss" else outcome
    store = outcome == "miss"  # after an error the cache is not asked again for this request
    flight = cache.computing[key] = Flight(cache, key, asyncio.ensure_future(compute()), store)
    return await flight.join(), outcome


class Flight:
    """One computation of a value, listed under its key until it is computed and stored, and how many callers
    wait for it."""

    def __init__(self, cache: DecisionCache, key: str, task: asyncio.Future[Any], store: bool) -> None:
        self.cache = cache
        self.computing = cache.computing
        self.key = key
        self.task = task
        self.store = store
        self.write: asyncio.Task[None] | None = None
        self.waiters = 0
        task.add_done_callback(self._done)

    async def join(self) -> Any:
        self.waiters += 1
        try:
            return await asyncio.shield(self.task)
        finally:
            self.waiters -= 1
            if not self.waiters and not self.task.done():
                self.task.cancel()  # nobody waits for it any more ...
                self._unlist()  # ... and a caller arriving before it has ended starts afresh, not with its cancel

    def _unlist(self) -> None:
        if self.computing.get(self.key) is self:
            del self.computing[self.key]

    def _done(self, task: asyncio.Future[Any]) -> None:
        """Store a computed value, then unlist it; unlist a failed computation at once (its error, if every
        caller left, is theirs to have seen, not the loop's)."""
        if task.cancelled() or task.exception() is not None or not self.store:
            self._unlist()
            return
        self.write = asyncio.ensure_future(self.cache.set(self.key, task.result()))  # never raises: fails open
        self.write.add_done_callback(lambda _: self._unlist())
