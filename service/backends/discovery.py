"""DNS discovery of replicas: every address a replica URL's host resolves to is a replica of its own.

For backends with `discovery: dns`, typically a Kubernetes headless Service (`clusterIP: None`), whose name
resolves to the address of every ready pod. The gateway then balances over the pods itself, with per-pod
health, load and circuit breaking, instead of over one Service address behind which kube-proxy spreads
connections blindly. The names are looked up again every `discovery_interval_s`: pods that appear are checked
and watched, pods that are gone are dropped (a request under way on one finishes there). A failed or empty
lookup keeps the replicas there are (at start, the URL as written).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable

from service.backends.monitor import ReplicaMonitor
from service.backends.pool import ReplicaPool
from service.config import Backend
from service.tasks import cancel_and_wait
from service.throttled_log import ThrottledLog
from service.upstream import host_and_port
from service.upstream.client import origin_of

log = logging.getLogger(__name__)

# host, port -> the addresses it resolves to
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (the system resolver, in a worker thread), sorted: its IPv4 ones where
    it has any (a dual-stack pod has one of each, and must count once), else its IPv6 ones."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    by_family: dict[int, set[str]] = {}
    for family, _, _, _, address in infos:
        by_family.setdefault(family, set()).add(str(address[0]))
    return sorted(by_family.get(socket.AF_INET) or by_family.get(socket.AF_INET6) or ())


class DnsDiscovery:
    """Keeps the replicas of every `discovery: dns` backend in step with what their hosts resolve to."""

    def __init__(self, backends: list[Backend], pool: ReplicaPool, monitor: ReplicaMonitor,
                 resolve: Resolver = resolve_addresses) -> None:
        self.backends = [b for b in backends if b.discovery == "dns"]
        self.pool = pool
        self.monitor = monitor
        self.resolve = resolve
        self._tasks: list[asyncio.Task[None]] = []
        self._failures = ThrottledLog(log)

    async def resolve_all(self) -> None:
        """Look every host up once, before the monitor's first checks (it watches what the pool holds)."""
        await asyncio.gather(*(self.refresh(b, watched=False) for b in self.backends))

    def start(self) -> None:
        """Keep looking the hosts up, each backend on its own period."""
        self._tasks = [asyncio.create_task(self._follow(b)) for b in self.backends]

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    async def _follow(self, backend: Backend) -> None:
        while True:
            await asyncio.sleep(backend.discovery_interval_s)
            try:
                await self.refresh(backend)
            except Exception as error:  # noqa: BLE001 - whatever went wrong, keep following the name
                self._failures.warning("discovery of %s failed (%s: %s); trying again in %g s", backend.name,
                                       type(error).__name__, error, backend.discovery_interval_s, key=backend.name)

    async def refresh(self, backend: Backend, *, watched: bool = True) -> None:
        """Make the backend's replicas the addresses its URLs resolve to now; with `watched`, have the monitor
        check and watch new ones and forget those gone."""
        try:
            urls = [url for seed in backend.replicas for url in await self._urls(str(seed))]
        except (OSError, UnicodeError) as error:  # socket.gaierror included: the name does not resolve (now)
            self._failures.warning("discovery of %s: %s; keeping its %d replicas", backend.name, error,
                                   len(self.pool.replicas(backend.name)), key=backend.name)
            return
        if not urls:
            return
        added, removed = self.pool.set_replicas(backend.name, urls)
        if added or removed:
            log.info("discovery of %s: %d replicas (%d new, %d gone)", backend.name,
                     len(self.pool.replicas(backend.name)), len(added), len(removed))
        if watched:
            await self.monitor.forget(removed)
            await self.monitor.add(added)

    async def _urls(self, seed: str) -> list[str]:
        """The replica URLs of one configured URL: its host replaced by each address it resolves to."""
        origin = origin_of(seed)  # plain http: the config refuses https with discovery
        addresses = await self.resolve(origin.host, origin.port)
        return [f"http://{host_and_port(address, origin.port)}{origin.prefix}" for address in addresses]

