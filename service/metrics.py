"""Every Prometheus metric the gateway exports, declared in one place.

`Metrics` owns its own `CollectorRegistry`, so each app (and each test) gets a fresh set.
All names carry the `switchyard_` prefix; the README's metrics reference lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# `_created` series double the exposition size and no dashboard uses them.
disable_created_metrics()

# Up to the longest stream a backend may run (`timeouts.total_s`, 600 s by default).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
# Up to a router or switcher decision queued behind a full batch on a slow CPU.
FAST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The process's own: memory, CPU time, open file descriptors (`process_*`), Python's GC and version.
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=r)
        # Requests and latency.
        self.requests = Counter(
            "switchyard_requests", "Requests answered, by public model, backend and HTTP status.",
            ["model", "backend", "status"], registry=r)
        self.refused = Counter(
            "switchyard_refused_requests", "Requests refused before a public model took them (a bad key, body, "
            "method or model name), by path and HTTP status.", ["path", "status"], registry=r)
        self.request_duration = Histogram(
            "switchyard_request_duration_seconds", "End-to-end request latency seen by the gateway.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.time_to_first_byte = Histogram(
            "switchyard_time_to_first_byte_seconds",
            "Time until a streamed reply's first byte is sent (buffered replies: request_duration).",
            ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.overhead = Histogram(
            "switchyard_overhead_seconds",
            "Time spent in the gateway itself (request latency minus time waiting on the backend).",
            ["model"], buckets=FAST_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "switchyard_in_flight_requests", "Requests being served now, by public model.",
            ["model"], registry=r)
        # Replicas.
        self.replica_healthy = Gauge(
            "switchyard_replica_healthy", "1 if the replica is eligible for traffic, else 0.",
            ["backend", "replica"], registry=r)
        self.replica_in_flight = Gauge(
            "switchyard_replica_in_flight", "The gateway's own requests in flight to the replica.",
            ["backend", "replica"], registry=r)
        self.replica_waiting = Gauge(
            "switchyard_replica_waiting", "Scraped vllm:num_requests_waiting of the replica.",
            ["backend", "replica"], registry=r)
        self.replica_running = Gauge(
            "switchyard_replica_running", "Scraped vllm:num_requests_running of the replica.",
            ["backend", "replica"], registry=r)
        self.replica_kv_cache = Gauge(
            "switchyard_replica_kv_cache_usage", "Scraped vllm:kv_cache_usage_perc of the replica (0-1).",
            ["backend", "replica"], registry=r)
        self.retries = Counter(
            "switchyard_retries", "Attempts moved to another replica before anything was sent.",
            ["backend"], registry=r)
        self.upstream_errors = Counter(
            "switchyard_upstream_errors",
            "Failed upstream attempts, by kind (connect, timeout, status, connection, stream).",
            ["backend", "replica", "kind"], registry=r)
        # Decisions.
        self.decisions = Counter(
            "switchyard_decisions",
            "Served strategy decisions (not /v1/route dry runs), by public model, chosen backend and reason.",
            ["model", "strategy", "backend", "reason"], registry=r)
        self.decision_duration = Histogram(
            "switchyard_decision_duration_seconds", "Time to decide (cache lookup and model inference).",
            ["strategy", "cache"], buckets=FAST_BUCKETS, registry=r)
        self.cache_requests = Counter(
            "switchyard_cache_requests", "Decision-cache lookups, by result (hit, miss, error).",
            ["result"], registry=r)
        self.cache_duration = Histogram(
            "switchyard_cache_duration_seconds", "Decision-cache operation latency.",
            ["operation"], buckets=FAST_BUCKETS, registry=r)
        # Reasoning-mode switch.
        self.thinking_mode = Counter(
            "switchyard_thinking_mode", "Served reasoning-mode decisions, by public model and mode (short, long).",
            ["model", "mode"], registry=r)
        self.thinking_tokens = Counter(
            "switchyard_thinking_generated_tokens", "Completion tokens generated, by public model and mode.",
            ["model", "mode"], registry=r)
        self.thinking_retries = Counter(
            "switchyard_thinking_short_retries",
            "Long answers cut at max_tokens and asked again in short mode, by public model and result "
            "(answered: the short answer replaced the cut one; failed: the cut one stood).",
            ["model", "result"], registry=r)
        # Fusion.
        self.fusion_steps = Counter(
            "switchyard_fusion_steps", "Cool-Fusion generate-score-select steps.", ["model"], registry=r)
        self.fusion_step_duration = Histogram(
            "switchyard_fusion_step_duration_seconds", "Wall time of one fusion step.",
            ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.fusion_member_calls = Counter(
            "switchyard_fusion_member_calls", "Backend calls made by fusion, by member and phase.",
            ["model", "member", "phase"], registry=r)

        labelled = [m for m in vars(self).values() if isinstance(m, Counter | Gauge | Histogram) and m._labelnames]
        for metric in labelled:
            _remember_children(metric)
        self._by_replica = [m for m in labelled if m._labelnames[:2] == ("backend", "replica")]

    def remove_replica(self, backend: str, url: str) -> None:
        """Drop every series of a replica that is gone (discovery), so that pod churn does not grow them: those
        of each metric labelled by backend and replica, whatever its other labels."""
        for metric in self._by_replica:
            for values in [v for v in list(metric._metrics) if v[:2] == (backend, url)]:
                metric.remove(*values)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _remember_children(metric: Counter | Gauge | Histogram) -> None:
    """Make `metric.labels(*values)` keep each child once found, until `metric.remove(*values)`.

    prometheus_client validates the values and takes a lock on every `labels()` call; the request path
    asks for the same few label sets (public models, backends, outcomes, all from the config or small
    enumerations) over and over.
    """
    children: dict[tuple[str, ...], Any] = {}
    labels: Callable[..., Any] = metric.labels
    remove: Callable[..., None] = metric.remove

    def remembered(*values: str, **by_name: str) -> Any:
        if by_name:
            return labels(*values, **by_name)
        child = children.get(values)
        if child is None:
            child = children[values] = labels(*values)
        return child

    def forgotten(*values: str) -> None:  # a series removed (a replica gone) starts afresh if it comes back
        children.pop(values, None)
        remove(*values)

    metric.labels = remembered  # type: ignore[method-assign, assignment]
    metric.remove = forgotten  # type: ignore[method-assign]
