"""The metric names (as scraped, with suffixes) and label names that Switchyard and vLLM export."""

from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from service.metrics import Metrics

# Sample names of each metric type, from the name in its `# TYPE` line (counters: already `_total`).
# The gateway turns `_created` series off (service/metrics.py).
SAMPLE_SUFFIXES = {"counter": ("",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                   "summary": ("", "_sum", "_count")}

# vLLM's documented metric names (current releases); all carry `model_name` and `engine`.
VLLM_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
VLLM_COUNTERS = ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total")
VLLM_HISTOGRAMS = ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                   "vllm:request_queue_time_seconds", "vllm:inter_token_latency_seconds")

# Labels Prometheus (and the Prometheus Operator) attach to every scraped series.
TARGET_LABELS = frozenset({"namespace", "pod", "instance", "job", "service", "endpoint", "container"})
# Series Prometheus writes itself for every scrape target, with only the target's labels.
SCRAPE_SERIES = {"up": TARGET_LABELS}


def exposition_names(exposition: str) -> set[str]:
    """Every sample name a /metrics text can carry, read from its `# TYPE` lines.

    Metrics with labels show no sample until first used, but their TYPE line is always there.
    """
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names |= {name + suffix for suffix in SAMPLE_SUFFIXES[kind]}
    return names


def gateway_metrics() -> dict[str, frozenset[str]]:
    """Scraped sample name -> label names, for every metric declared in service.metrics."""
    exported = {}
    metrics = Metrics()
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            (family,) = collector.describe()
            # Declared label names live on the wrapper; prometheus_client has no public accessor.
            labels = frozenset(collector._labelnames)
            base = family.name + ("_total" if family.type == "counter" else "")
            for suffix in SAMPLE_SUFFIXES[family.type]:
                exported[base + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for family in metrics.registry.collect():  # the process's own (`process_*`, `python_*`): always sampled
        if not family.name.startswith("switchyard_"):
            for sample in family.samples:
                exported[sample.name] = exported.get(sample.name, frozenset()) | frozenset(sample.labels)
    return exported


def vllm_metrics() -> dict[str, frozenset[str]]:
    labels = frozenset({"model_name", "engine"})
    exported = {name: labels for name in VLLM_GAUGES + VLLM_COUNTERS}
    for name in VLLM_HISTOGRAMS:
        exported |= {name + "_bucket": labels | {"le"}, name + "_sum": labels, name + "_count": labels}
    return exported
