"""A Redis decision cache, shared by every gateway replica; it fails open.

Each call is bounded by `timeout_s`. When Redis is slow or down the request is decided without the
cache, `switchyard_cache_requests_total{result="error"}` counts it and a log line says so, at most
once every 30 s. After a failure Redis is left alone for `retry_after_s`: those requests are decided
without it at once (also counted as `error`) instead of each waiting out the timeout. A burst that finds
every connection taken for `timeout_s` is decided without the cache too, but is no failure of Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.cache.base import DecisionCache
from service.metrics import Metrics
from service.throttled_log import ThrottledLog

log = logging.getLogger(__name__)


class RedisUnavailable(Exception):
    """Redis failed less than `retry_after_s` ago: not asked this time."""


class RedisBusy(Exception):
    """Every connection stayed taken for `timeout_s`: a burst of this gateway, not Redis failing."""


class RedisCache(DecisionCache):
    def __init__(self, metrics: Metrics, url: str, ttl_s: int, timeout_s: float, max_connections: int = 64, *,
                 retry_after_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 password: str | None = None) -> None:
        super().__init__(metrics)
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._down_until = -float("inf")
        self.client = redis.Redis.from_url(  # a password in `url` wins over `password`
            url, password=password, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            max_connections=max_connections,
            # One immediate retry replaces a pooled connection that went stale (e.g. Redis restarted).
            retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError], health_check_interval=0,
        )
        self._warn = ThrottledLog(log)
        self._failing = False  # the last call failed: the next one that succeeds says Redis is back
        # At most `max_connections` calls at once: a burst waits for a free connection (within `timeout_s`)
        # instead of the pool refusing it, which would read as Redis being down.
        self._slots = asyncio.Semaphore(max_connections)

    async def start(self) -> None:
        """Ask Redis once, so that a wrong address or password shows in the start-up log, not at the first
        request; the gateway starts either way (the cache fails open)."""
        try:
            await self._call(self.client.ping)
        except Exception as error:  # noqa: BLE001 - logged by `_trouble`; Redis may come up later
            self._trouble("check", error)

    def describe(self) -> str:
        where = self.client.connection_pool.connection_kwargs
        place = where.get("path") or f"{where.get('host')}:{where.get('port')}"
        return f"Redis at {place}, db {where.get('db', 0)}{'' if self._failing else ', answering'}"

    async def close(self) -> None:
        await self.client.aclose()

    def _check_up(self) -> None:
        if self.clock() < self._down_until:
            raise RedisUnavailable(f"failed less than {self.retry_after_s:g} s ago")

    async def _get(self, key: str) -> Any | None:
        raw = await self._call(lambda: self.client.get(key))
        if raw is None:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:  # not a value this gateway wrote: a miss, and overwritten
            self._warn.warning("decision cache: key %s holds no JSON; deciding afresh", key)
            return None

    async def _set(self, key: str, value: Any) -> None:
        await self._call(lambda: self.client.set(key, orjson.dumps(value), ex=self.ttl_s))

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """`command()` on a free connection, waiting for one and the answer within `timeout_s` in all; a wait
        that ends before a connection was free is `RedisBusy`."""
        self._check_up()
        connected = False
        try:
            async with asyncio.timeout(self.timeout_s), self._slots:
                connected = True
                result = await command()
        except TimeoutError:
            if connected:
                raise
            raise RedisBusy(f"no free connection within {self.timeout_s:g} s") from None
        if self._failing:
            self._failing = False
            log.info("decision cache: Redis answers again")
        return result

    def _trouble(self, operation: str, error: Exception) -> None:
        # Redis unreachable or slow: leave it alone a while. A command it refused (a write over maxmemory, a
        # read-only replica) says nothing about the next read.
        if isinstance(error, TimeoutError | RedisConnectionError | RedisTimeoutError):
            self._down_until = self.clock() + self.retry_after_s
            self._failing = True
        self._warn.warning("decision cache %s failed (%s: %s); deciding without the cache", operation,
                           type(error).__name__, error)
