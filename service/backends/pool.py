"""The replicas of every backend model, and the least-loaded choice among them."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

from service.backends.replica import Replica
from service.config import Backend, DispatchSettings
from service.errors import ModelNotFound, NoHealthyReplica, Saturated


class ReplicaPool:
    """All replicas, grouped by backend name. Pure state: no I/O happens here."""

    def __init__(self, backends: Iterable[Backend], settings: DispatchSettings) -> None:
        self.settings = settings
        self.by_backend: dict[str, list[Replica]] = {
            b.name: [Replica(backend=b.name, url=str(url).rstrip("/")) for url in b.replicas] for b in backends
        }

    def all(self) -> list[Replica]:
        return [r for replicas in self.by_backend.values() for r in replicas]

    def set_replicas(self, backend: str, urls: Iterable[str]) -> tuple[list[Replica], list[Replica]]:
        """Make `urls` the replicas of `backend` (discovery): those already known keep their state. Returns
        the replicas added and removed; a request under way on a removed one finishes there."""
        known = {r.url: r for r in self.replicas(backend)}
        wanted = dict.fromkeys(url.rstrip("/") for url in urls)  # ordered, each once
        replicas = [known.get(url) or Replica(backend=backend, url=url) for url in wanted]
        self.by_backend[backend] = replicas
        added = [r for r in replicas if r.url not in known]
        removed = [r for url, r in known.items() if url not in wanted]
        return added, removed

    def replicas(self, backend: str) -> list[Replica]:
        try:
            return self.by_backend[backend]
        except KeyError:
            raise ModelNotFound(f"backend {backend!r} is not configured") from None

    def has_available(self, backend: str) -> bool:
        now = time.monotonic()
        return any(r.available(now) for r in self.replicas(backend))

    def can_take(self, backend: str) -> bool:
        """An available replica whose queue is under the limit: a request sent now is served without
        queueing behind saturated engines (load-aware routing asks this)."""
        now = time.monotonic()
        limit = self.settings.saturation_queue
        return any(r.available(now) and not r.saturated(limit) for r in self.replicas(backend))

    def pick(self, backend: str, exclude: Iterable[Replica] = ()) -> Replica:
        """The least-loaded available replica not in `exclude`; ties broken at random. A replica on
        probation (readmitted after an ejection) that is busy with its test request is passed over while
        another can serve.

        Raises `NoHealthyReplica` when none is available and `Saturated` when all are saturated.
        """
        now = time.monotonic()
        excluded = {id(r) for r in exclude}
        candidates = [r for r in self.replicas(backend) if r.available(now) and id(r) not in excluded]
        if not candidates:
            raise NoHealthyReplica(f"no healthy replica of backend {backend!r}",
                                   retry_after_s=self._readmission_s(backend, excluded, now))
        proven = [r for r in candidates if not (r.probation and r.in_flight)]
        candidates = proven or candidates  # a replica on probation serves more only where none else can
        unsaturated = [r for r in candidates if not r.saturated(self.settings.saturation_queue)]
        if not unsaturated:
            raise Saturated(f"every replica of backend {backend!r} is saturated; retry later")
        scores = [r.load_score() for r in unsaturated]
        best = min(scores)
        return random.choice([r for r, score in zip(unsaturated, scores, strict=True) if score == best])

    def _readmission_s(self, backend: str, excluded: set[int], now: float) -> float:
        """Seconds until the first replica of `backend` may serve again: one this request already tried can
        serve the next one at once; an unavailable one after its cooldown and the next health check."""
        interval = self.settings.health_interval_s
        return min((0.0 if id(r) in excluded else max(0.0, r.ejected_until - now) + interval
                    for r in self.replicas(backend)), default=interval)
