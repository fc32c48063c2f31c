"""Background watch over every replica: active `/health` polling and `/metrics` load scraping."""

from __future__ import annotations

import asyncio
import logging
import time

from service.backends.pool import ReplicaPool
from service.backends.replica import Replica
from service.backends.scrape import parse_vllm_load
from service.config import DispatchSettings
from service.metrics import Metrics
from service.tasks import cancel_and_wait
from service.upstream import (
    ResponseTooLarge,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamConnectionError,
    bearer_header,
)

log = logging.getLogger(__name__)
_HEALTH_BYTES = 1 << 16  # vLLM answers /health with an empty body
_METRICS_BYTES = 1 << 24  # a vLLM /metrics page is some hundred KiB


def scrape_timeout_s(settings: DispatchSettings) -> float:
    """How long one `/metrics` scrape may take: a replica too busy to answer sooner keeps its last load."""
    return max(0.5, settings.scrape_interval_s * 2)


def longest_scrape_gap_s(settings: DispatchSettings) -> float:
    """The longest two scrapes of a working replica can be apart: the period, a scrape's timeout and a health
    check's (which the same task runs in between)."""
    return settings.scrape_interval_s + scrape_timeout_s(settings) + settings.health_timeout_s


class ReplicaMonitor:
    """One task per replica; scrapes load every `scrape_interval_s`, checks health every `health_interval_s`."""

    def __init__(self, pool: ReplicaPool, client: UpstreamClient, metrics: Metrics,
                 api_keys: dict[str, str | None]) -> None:
        self.pool = pool
        self.client = client
        self.metrics = metrics
        self._headers = {backend: bearer_header(key) for backend, key in api_keys.items()}
        self._tasks: dict[int, asyncio.Task[None]] = {}  # by id(replica)
        self._scrape_timeout_s = scrape_timeout_s(pool.settings)
        self._longest_scrape_gap_s = longest_scrape_gap_s(pool.settings)

    async def start(self) -> None:
        """Check every replica once (so `/ready` is right from the start), then keep watching."""
        await self.add(self.pool.all())

    async def add(self, replicas: list[Replica]) -> None:
        """Check new replicas once, then watch them."""
        await asyncio.gather(*(self.check_health(r) for r in replicas))
        for replica in replicas:
            self._tasks[id(replica)] = asyncio.create_task(self._watch(replica))

    async def forget(self, replicas: list[Replica]) -> None:
        """Stop watching replicas that are gone; drop their metric series and idle connections."""
        await cancel_and_wait(task for r in replicas if (task := self._tasks.pop(id(r), None)) is not None)
        for replica in replicas:
            replica.removed = True
            self.metrics.remove_replica(replica.backend, replica.url)
            self.client.forget(replica.url)

    async def close(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        await cancel_and_wait(tasks)

    async def _watch(self, replica: Replica) -> None:
        """Health checks and scrapes of one replica, each on its own period."""
        settings = self.pool.settings
        next_health = time.monotonic() + settings.health_interval_s
        next_scrape = time.monotonic() + settings.scrape_interval_s
        while True:
            await asyncio.sleep(max(0.0, min(next_health, next_scrape) - time.monotonic()))
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + settings.health_interval_s
                await self.check_health(replica)
            if time.monotonic() >= next_scrape:
                next_scrape = time.monotonic() + settings.scrape_interval_s
                if replica.scrapable():
                    await self.scrape(replica)
            self.publish(replica)

    async def _get(self, replica: Replica, path: str, timeout_s: float, limit: int) -> tuple[int, bytes]:
        """Status and body of a GET to the replica, within `timeout_s` in all; `ResponseTooLarge` for a body
        over `limit` bytes."""
        async with asyncio.timeout(timeout_s):
            headers = self._headers.get(replica.backend, b"")
            response = await self.client.request(replica.url, "GET", path, headers=headers)
            try:
                return response.status, await response.read(limit)
            finally:
                self.client.release(response)  # closed unless the whole answer was read

    async def check_health(self, replica: Replica) -> None:
        """A refused connection marks the replica down at once; a slow or failing answer only after
        `health_failures` checks in a row (a busy CPU engine can miss one deadline without being down)."""
        refused = False
        try:
            status, _ = await self._get(replica, "/health", self.pool.settings.health_timeout_s, _HEALTH_BYTES)
            ok, why = status == 200, f"answered {status}"
        except UpstreamConnectError:
            ok, refused, why = False, True, "refused the connection"
        except TimeoutError:
            ok, why = False, f"did not answer within {self.pool.settings.health_timeout_s:g} s"
        except UpstreamConnectionError:
            ok, why = False, "dropped the connection"
        except ResponseTooLarge:  # not vLLM's empty answer: something else answers at that URL
            ok, why = False, f"answered with more than {_HEALTH_BYTES} bytes"
        if ok:
            replica.failed_checks = 0
            if not replica.healthy and time.monotonic() >= replica.ejected_until:
                # Readmitted with a clean slate. A replica that is already serving keeps its streak of
                # failed requests: an engine can answer /health and still fail every completion.
                log.info("replica %s of %s is healthy again", replica.url, replica.backend)
                replica.healthy = True
                replica.consecutive_failures = 0
        else:
            replica.failed_checks += 1
            if replica.healthy and (refused or replica.failed_checks >= self.pool.settings.health_failures):
                log.warning("replica %s of %s failed its health check: it %s", replica.url, replica.backend, why)
                replica.healthy = False
        self.publish(replica)

    async def scrape(self, replica: Replica) -> None:
        try:
            status, body = await self._get(replica, "/metrics", self._scrape_timeout_s, _METRICS_BYTES)
        except (TimeoutError, UpstreamConnectionError, ResponseTooLarge):
            return  # the last load stands: a replica too busy to answer /metrics must not look idle
        if status == 200:
            replica.take_load(parse_vllm_load(body.decode("utf-8", "replace")), time.monotonic(),
                              self._longest_scrape_gap_s)

    def publish(self, replica: Replica) -> None:
        labels = (replica.backend, replica.url)
        self.metrics.replica_healthy.labels(*labels).set(1 if replica.available() else 0)
        self.metrics.replica_waiting.labels(*labels).set(replica.load.waiting)
        self.metrics.replica_running.labels(*labels).set(replica.load.running)
        self.metrics.replica_kv_cache.labels(*labels).set(replica.load.kv_cache_usage)
        self.metrics.replica_in_flight.labels(*labels).set(replica.in_flight)
