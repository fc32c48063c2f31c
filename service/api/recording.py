"""One request's metrics: status, latency, time to first byte and the gateway's own overhead."""

from __future__ import annotations

import time

from service.metrics import Metrics

# Status nginx uses for "client closed request": recorded, never sent.
CLIENT_CLOSED = 499
# Recorded for a stream cut because the client stopped reading it (never sent either).
CLIENT_TOO_SLOW = 408


class ModelMetrics:
    """One public model's request metrics with their label children bound once, not looked up per request."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.model = model
        self.requests = metrics.requests
        self.in_flight = metrics.in_flight.labels(model)
        self.duration = metrics.request_duration.labels(model)
        self.first_byte = metrics.time_to_first_byte.labels(model)
        self.overhead = metrics.overhead.labels(model)

    def count(self, backend: str, status: int) -> None:
        self.requests.labels(self.model, backend or "none", str(status)).inc()


class RequestRecorder:
    """Records one request's metrics: status, latency, time to first byte and the gateway's own overhead."""

    __slots__ = ("metrics", "started")

    def __init__(self, metrics: ModelMetrics) -> None:
        self.metrics = metrics
        self.started = time.perf_counter()
        metrics.in_flight.inc()

    def finish(self, status: int, backend: str, upstream_s: float, first_byte_at: float | None = None) -> None:
        now = time.perf_counter()
        elapsed = now - self.started
        m = self.metrics
        m.in_flight.dec()
        m.count(backend, status)
        m.duration.observe(elapsed)
        if first_byte_at is not None:  # streams only: a buffered reply's first byte is its whole duration
            m.first_byte.observe(first_byte_at - self.started)
        if upstream_s:
            m.overhead.observe(max(0.0, elapsed - upstream_s))
