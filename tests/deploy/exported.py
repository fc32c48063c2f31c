"""The metric names (as scraped, with suffixes) and label names that Switchyard and vLLM export."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from service.metrics import Metrics

# Suffixes prometheus_client adds to each family's samples, by metric type.
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("", "_sum", "_count", "_created")}

# vLLM's documented metric names (current releases); all carry `model_name` and `engine`.
VLLM_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
VLLM_COUNTERS = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total")
VLLM_HISTOGRAMS = ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                   "vllm:request_queue_time_seconds", "vllm:inter_token_latency_seconds")

# Labels Prometheus (and the Prometheus Operator) attach to every scraped series.
TARGET_LABELS = frozenset({"namespace", "pod", "instance", "job", "service", "endpoint", "container"})


def gateway_metrics() -> dict[str, frozenset[str]]:
    """Scraped sample name -> label names, for every metric declared in service.metrics."""
    metrics = Metrics()
    exported: dict[str, frozenset[str]] = {}
    for collector in vars(metrics).values():
        if not isinstance(collector, MetricWrapperBase):
            continue
        (family,) = collector.describe()
        # Declared label names live on the wrapper; prometheus_client exposes no public accessor.
        labels = frozenset(collector._labelnames)
        for suffix in SUFFIXES[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            exported[family.name + suffix] = labels | extra
    return exported


def vllm_metrics() -> dict[str, frozenset[str]]:
    labels = frozenset({"model_name", "engine"})
    exported = {name: labels for name in VLLM_GAUGES + VLLM_COUNTERS}
    for name in VLLM_HISTOGRAMS:
        exported |= {name + "_bucket": labels | {"le"}, name + "_sum": labels, name + "_count": labels}
    return exported
