"""The decision caches against a real Redis server: hits, TTL, LRU bounds, and failing open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from service.cache import MemoryCache, RedisCache, decision_key
from service.cache.base import DecisionCache, cached
from service.cache.keys import normalise
from service.metrics import Metrics
from service.strategies.cached_scores import numbers_under
from tests.harness import RedisServer, free_port, metric_value


def test_key_depends_on_content_versions_and_not_on_spacing() -> None:
    key = decision_key("lookahead", "cfg1", "art1", normalise("What is  2+2?\n"))
    assert key == decision_key("lookahead", "cfg1", "art1", "What is 2+2?")
    assert key != decision_key("lookahead", "cfg2", "art1", "What is 2+2?")
    assert key != decision_key("lookahead", "cfg1", "art2", "What is 2+2?")
    assert key != decision_key("lookahead", "cfg1", "art1", "What is 2+3?")


async def test_memory_cache_is_a_bounded_lru() -> None:
    cache = MemoryCache(Metrics(), max_entries=2, ttl_s=60)
    await cache.set("a", 1)
    await cache.set("b", 2)
    assert await cache.get("a") == (1, "hit")  # a is now the most recent
    await cache.set("c", 3)
    assert await cache.get("b") == (None, "miss")
    assert len(cache) == 2


async def test_memory_cache_expires_entries() -> None:
    now = [100.0]
    cache = MemoryCache(Metrics(), max_entries=10, ttl_s=30, clock=lambda: now[0])
    await cache.set("a", 1)
    now[0] += 29
    assert await cache.get("a") == (1, "hit")
    now[0] += 1
    assert await cache.get("a") == (None, "miss")


# What a lookup of the Redis the test owns may take: a first connection on a busy machine can outlast
# 50-500 ms, and an expired lookup reads as an outage, which these tests do not look for unless they say so.
REDIS_TIMEOUT_S = 2.0


def redis_cache(server: RedisServer, metrics: Metrics | None = None, **options: Any) -> RedisCache:
    """A `RedisCache` of the test's Redis (ttl 60 s unless `options` say otherwise)."""
    return RedisCache(metrics or Metrics(), server.url, **{"ttl_s": 60, "timeout_s": REDIS_TIMEOUT_S, **options})


async def test_redis_cache_round_trip_and_ttl(redis_server: RedisServer) -> None:
    metrics = Metrics()
    cache = redis_cache(redis_server, metrics, ttl_s=120)
    assert await cache.get("k") == (None, "miss")
    await cache.set("k", {"quality": [0.1, 0.9]})
    assert await cache.get("k") == ({"quality": [0.1, 0.9]}, "hit")
    assert 0 < await cache.client.ttl("k") <= 120
    exposition = metrics.render().decode()
    assert metric_value(exposition, "switchyard_cache_requests_total", result="hit") == 1
    assert metric_value(exposition, "switchyard_cache_requests_total", result="miss") == 1
    await cache.close()


async def test_redis_down_fails_open_and_recovers(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service.cache.redis")
    metrics = Metrics()
    now = [0.0]
    cache = redis_cache(redis_server, metrics, retry_after_s=1.0, clock=lambda: now[0])
    await cache.start()
    assert cache.describe().endswith(", db 0, answering") and not caplog.records
    await cache.set("k", 1)
    redis_server.stop()
    assert await cache.get("k") == (None, "error")
    await cache.set("k2", 2)  # does not raise
    assert await cache.get("k") == (None, "error")
    assert sum("deciding without the cache" in r.message for r in caplog.records) == 1  # rate-limited
    redis_server.start()
    assert await cache.get("k") == (None, "error"), "Redis is left alone for retry_after_s after a failure"
    now[0] += 1.0
    await cache.set("k", 3)
    assert await cache.get("k") == (3, "hit")
    assert metric_value(metrics.render().decode(), "switchyard_cache_requests_total", result="error") == 3
    assert [r.message for r in caplog.records].count("decision cache: Redis answers again") == 1
    await cache.close()


async def test_a_redis_down_at_start_is_logged_and_the_cache_starts_anyway(caplog: pytest.LogCaptureFixture) -> None:
    cache = RedisCache(Metrics(), f"redis://127.0.0.1:{free_port()}/0", ttl_s=60, timeout_s=0.5)
    await cache.start()
    assert cache.describe().startswith("Redis at 127.0.0.1:") and not cache.describe().endswith("answering")
    assert any(r.message.startswith("decision cache check failed") for r in caplog.records)
    await cache.close()


async def test_a_redis_that_never_answers_costs_one_timeout_per_retry_window() -> None:
    """A server that accepts connections and never replies: the first lookup waits out the timeout, the
    ones after it within `retry_after_s` do not touch the socket, and nothing is written after an error."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    now = [0.0]
    cache = RedisCache(Metrics(), f"redis://127.0.0.1:{port}/0", ttl_s=60, timeout_s=0.05, clock=lambda: now[0])
    computed = []

    async def compute() -> int:
        computed.append(1)
        return 7

    assert await cached(cache, "k", compute) == (7, "error")
    connections = len(accepted)
    for _ in range(20):
        assert await cached(cache, "k", compute) == (7, "error")
    assert len(computed) == 21 and len(accepted) == connections, "no new connection while the window is open"
    await cache.close()
    server.close()



async def test_a_burst_beyond_the_redis_pool_waits_for_connections_instead_of_failing(
        redis_server: RedisServer) -> None:
    cache = redis_cache(redis_server, timeout_s=10.0, max_connections=4)
    await cache.set("k", 1)
    outcomes = [outcome for _, outcome in await asyncio.gather(*(cache.get("k") for _ in range(200)))]
    assert outcomes == ["hit"] * 200
    await cache.close()


async def test_a_burst_that_outwaits_the_timeout_is_no_outage(redis_server: RedisServer) -> None:
    """Every connection taken past timeout_s: that lookup goes without the cache, but Redis, which did not
    fail, is asked again at once (a burst used to switch the cache off for retry_after_s)."""
    cache = redis_cache(redis_server, max_connections=1, retry_after_s=60)
    await cache.set("k", 1)
    await cache._slots.acquire()  # the one connection is busy ...
    cache.timeout_s = 0.05  # ... for longer than this lookup waits (only the wait is short: Redis is not slow)
    assert await cache.get("k") == (None, "error")
    cache.timeout_s = REDIS_TIMEOUT_S
    cache._slots.release()
    assert await cache.get("k") == (1, "hit")
    await cache.close()


async def until(condition: Callable[[], bool], turns: int = 1000) -> None:
    """Let the other tasks run until `condition` holds (each step is one loop turn, not a pause); a condition
    still false after `turns` turns fails the test instead of hanging it."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"not reached within {turns} loop turns")


async def written(cache: DecisionCache) -> None:
    """Wait until the computed values are written and unlisted: each write is awaited (for Redis a round
    trip, which takes an unknown number of loop turns), then the callbacks that unlist them run."""
    await asyncio.gather(*(flight.write for flight in list(cache.computing.values()) if flight.write is not None))
    await until(lambda: not cache.computing)


def waiters(cache: MemoryCache, key: str) -> int:
    """How many callers wait for the computation of `key`."""
    flight = cache.computing.get(key)
    return flight.waiters if flight else 0


class Computation:
    """A value computed once `release` is set, counting how often it was asked for and cancelled."""

    def __init__(self) -> None:
        self.calls = 0
        self.cancelled = 0
        self.release = asyncio.Event()

    async def __call__(self) -> int:
        self.calls += 1
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return 42


async def test_concurrent_misses_of_one_key_share_one_computation() -> None:
    cache, compute = MemoryCache(Metrics(), max_entries=10, ttl_s=60), Computation()
    callers = [asyncio.ensure_future(cached(cache, "k", compute)) for _ in range(10)]
    await until(lambda: waiters(cache, "k") == 10)
    compute.release.set()
    results = await asyncio.gather(*callers)
    assert compute.calls == 1
    assert sorted(results) == [(42, "hit")] * 9 + [(42, "miss")]
    assert await cache.get("k") == (42, "hit") and not cache.computing


async def test_a_shared_computation_outlives_one_caller_and_stops_with_the_last() -> None:
    cache, compute = MemoryCache(Metrics(), max_entries=10, ttl_s=60), Computation()
    leaves, stays = (asyncio.ensure_future(cached(cache, "k", compute)) for _ in range(2))
    await until(lambda: waiters(cache, "k") == 2)
    leaves.cancel()
    compute.release.set()
    assert await stays == (42, "hit") and compute.cancelled == 0
    alone = asyncio.ensure_future(cached(cache, "other", Computation()))
    await until(lambda: waiters(cache, "other") == 1)
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone
    await until(lambda: not cache.computing)  # the computation nobody waited for is cancelled and forgotten


async def test_a_caller_arriving_as_the_last_one_leaves_gets_a_computation_of_its_own() -> None:
    cache, compute = MemoryCache(Metrics(), max_entries=10, ttl_s=60), Computation()
    leaves = asyncio.ensure_future(cached(cache, "k", compute))
    await asyncio.sleep(0)  # waiting on the shared computation
    leaves.cancel()  # it leaves on its next turn, cancelling the computation, which ends a turn later ...
    arrives = asyncio.ensure_future(cached(cache, "k", compute))  # ... and this one looks for it in between
    await asyncio.sleep(0)
    compute.release.set()
    assert await arrives == (42, "miss")  # not the cancellation of a computation it did not give up
    with pytest.raises(asyncio.CancelledError):
        await leaves
    assert compute.calls == 2 and compute.cancelled == 1 and not cache.computing


class SlowWrites(MemoryCache):
    """A memory cache whose writes wait for `release` (a cache slow to write, e.g. Redis under load)."""

    def __init__(self) -> None:
        super().__init__(Metrics(), max_entries=10, ttl_s=60)
        self.release = asyncio.Event()

    async def _set(self, key: str, value: object) -> None:
        await self.release.wait()
        await super()._set(key, value)


async def test_a_slow_write_delays_no_decision_and_its_value_is_shared_meanwhile() -> None:
    cache, compute = SlowWrites(), Computation()
    compute.release.set()
    # though the write is still waiting (a deadline, so that a regression fails instead of hanging)
    assert await asyncio.wait_for(cached(cache, "k", compute), 5) == (42, "miss")
    assert await cached(cache, "k", compute) == (42, "hit") and compute.calls == 1  # the value being written
    cache.release.set()
    flight = cache.computing["k"]
    assert flight.write is not None
    await flight.write
    assert not cache.computing and await cache.get("k") == (42, "hit")


async def test_a_refused_write_or_a_foreign_value_does_not_switch_the_cache_off(redis_server: RedisServer) -> None:
    now = [0.0]
    cache = redis_cache(redis_server, retry_after_s=60, clock=lambda: now[0])
    await cache.client.set("foreign", b"\x80 not json")
    assert await cache.get("foreign") == (None, "miss")  # decided afresh, and overwritten
    await cache.set("k", 1)
    await cache.client.config_set("maxmemory", "1")  # with the default noeviction, every write is refused
    try:
        await cache.set("k2", 2)
        assert await cache.get("k") == (1, "hit"), "reads go on after a refused write"
    finally:
        await cache.client.config_set("maxmemory", "0")
    await cache.close()


async def test_a_stored_value_of_another_shape_is_computed_again_and_overwritten(redis_server: RedisServer) -> None:
    cache = redis_cache(redis_server)
    valid = numbers_under("quality", 2)

    async def compute() -> dict[str, list[float]]:
        return {"quality": [0.25, 0.75]}

    for stored in ([], [0.5], [0.5, 0.2, 0.1], [0.5, "x"], [0.5, True], {"q": 1}, "text", [0.5, 1e400]):
        await cache.client.set("k", orjson.dumps({"quality": stored}) if stored != "text" else b'"text"')
        assert await cached(cache, "k", compute, valid) == ({"quality": [0.25, 0.75]}, "miss"), stored
        await written(cache)
        assert await cached(cache, "k", compute, valid) == ({"quality": [0.25, 0.75]}, "hit")
    await cache.close()


async def test_redis_password_from_its_own_field(redis_server: RedisServer) -> None:
    secret = "p@ss#1/x"  # would have to be URL-encoded inside redis_url
    admin = redis_cache(redis_server)
    await admin.client.config_set("requirepass", secret)
    try:
        cache = redis_cache(redis_server, password=secret)
        await cache.set("k", 1)
        assert await cache.get("k") == (1, "hit")
        await cache.close()
    finally:
        await admin.client.execute_command("AUTH", secret)
        await admin.client.config_set("requirepass", "")
        await admin.close()


async def test_a_lookup_that_failed_joins_a_computation_as_an_error_and_a_miss_makes_it_stored() -> None:
    class Flaky(MemoryCache):
        failing = True

        async def _get(self, key: str) -> object:
            if self.failing:
                raise ConnectionError("down")
            return await super()._get(key)

    cache = Flaky(Metrics(), max_entries=10, ttl_s=60)
    release = asyncio.Event()

    async def compute() -> int:
        await release.wait()
        return 7

    def waiting() -> int:
        return waiters(cache, "k")

    first = asyncio.ensure_future(cached(cache, "k", compute))  # its lookup failed: it would not store
    await until(lambda: waiting() == 1)
    second = asyncio.ensure_future(cached(cache, "k", compute))  # fails too: joins, and says so
    await until(lambda: waiting() == 2)
    cache.failing = False
    third = asyncio.ensure_future(cached(cache, "k", compute))  # a plain miss: joins, and has it stored
    await until(lambda: waiting() == 3)
    release.set()
    assert [await first, await second, await third] == [(7, "error"), (7, "error"), (7, "hit")]
    await written(cache)  # the write follows the answers
    assert await cache.get("k") == (7, "hit")
