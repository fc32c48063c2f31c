"""Background watch over every replica: active `/health` polling and `/metrics` load scraping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiohttp

from service.backends.pool import ReplicaPool
from service.backends.replica import Replica, ScrapedLoad
from service.backends.scrape import parse_vllm_load
from service.metrics import Metrics

log = logging.getLogger(__name__)


class ReplicaMonitor:
    """One task per replica; scrapes load every `scrape_interval_s`, checks health every `health_interval_s`."""

    def __init__(self, pool: ReplicaPool, session: aiohttp.ClientSession, metrics: Metrics,
                 api_keys: dict[str, str | None]) -> None:
        self.pool = pool
        self.session = session
        self.metrics = metrics
        self.api_keys = api_keys
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Check every replica once (so `/ready` is right from the start), then keep watching."""
        await asyncio.gather(*(self.check_health(r) for r in self.pool.all()))
        self._tasks = [asyncio.create_task(self._watch(r)) for r in self.pool.all()]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self, replica: Replica) -> None:
        settings = self.pool.settings
        next_health = time.monotonic() + settings.health_interval_s
        while True:
            await asyncio.sleep(settings.scrape_interval_s)
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + settings.health_interval_s
                await self.check_health(replica)
            if replica.healthy:
                await self.scrape(replica)
            self.publish(replica)

    def _headers(self, replica: Replica) -> dict[str, str]:
        key = self.api_keys.get(replica.backend)
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def check_health(self, replica: Replica) -> None:
        """A refused connection marks the replica down at once; a slow or failing answer only after
        `health_failures` checks in a row (a busy CPU engine can miss one deadline without being down)."""
        timeout = aiohttp.ClientTimeout(total=self.pool.settings.health_timeout_s)
        refused = False
        try:
            async with self.session.get(replica.url + "/health", timeout=timeout,
                                        headers=self._headers(replica)) as response:
                ok = response.status == 200
        except aiohttp.ClientConnectorError:
            ok, refused = False, True
        except (TimeoutError, aiohttp.ClientError):
            ok = False
        if ok:
            replica.failed_checks = 0
            if time.monotonic() >= replica.ejected_until:
                if not replica.healthy:
                    log.info("replica %s of %s is healthy again", replica.url, replica.backend)
                replica.healthy = True
                replica.consecutive_failures = 0
        else:
            replica.failed_checks += 1
            if replica.healthy and (refused or replica.failed_checks >= self.pool.settings.health_failures):
                log.warning("replica %s of %s failed its health check", replica.url, replica.backend)
                replica.healthy = False
        self.publish(replica)

    async def scrape(self, replica: Replica) -> None:
        timeout = aiohttp.ClientTimeout(total=max(0.5, self.pool.settings.scrape_interval_s * 2))
        try:
            async with self.session.get(replica.url + "/metrics", timeout=timeout,
                                        headers=self._headers(replica)) as response:
                if response.status != 200:
                    return
                text = await response.text()
        except (TimeoutError, aiohttp.ClientError):
            replica.load = ScrapedLoad()
            return
        replica.load = parse_vllm_load(text)

    def publish(self, replica: Replica) -> None:
        labels = (replica.backend, replica.url)
        self.metrics.replica_healthy.labels(*labels).set(1 if replica.available() else 0)
        self.metrics.replica_waiting.labels(*labels).set(replica.load.waiting)
        self.metrics.replica_running.labels(*labels).set(replica.load.running)
        self.metrics.replica_kv_cache.labels(*labels).set(replica.load.kv_cache_usage)
        self.metrics.replica_in_flight.labels(*labels).set(replica.in_flight)
