"""The gateway's load scraper reads the real `vllm:` engine gauges of each replica."""

from __future__ import annotations

import threading

import httpx

from tests.e2e.conftest import PUBLIC_MODELS, Backends
from tests.harness import GatewayServer, wait_until


def test_vllm_exports_the_gauges_the_scraper_reads(backends: Backends) -> None:
    for name in PUBLIC_MODELS.values():
        text = httpx.get(f"{backends.url(name)}/metrics", timeout=10).text
        # the counter and the histogram tell a long answer from a hung engine or a stuck request
        for metric in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                       "vllm:generation_tokens_total", "vllm:inter_token_latency_seconds_sum",
                       "vllm:inter_token_latency_seconds_count"):
            assert f"{metric}{{" in text, f"{metric} missing from {name}'s /metrics"


def test_replica_gauges_follow_a_running_request(cpu_gateway: GatewayServer, backends: Backends) -> None:
    """While a long generation runs on SmolLM2, the scraped `running` gauge of its replica reads 1, and its time
    per token is measured."""
    backend, url = PUBLIC_MODELS["smollm2"], backends.url(PUBLIC_MODELS["smollm2"])
    labels = {"backend": backend, "replica": url}
    wait_until(lambda: cpu_gateway.metric("switchyard_replica_healthy", **labels) == 1.0, timeout=30,
               what="the SmolLM2 replica to be reported healthy")
    # idle: what earlier tests left running (fusion's cancelled drafts) has ended
    wait_until(lambda: cpu_gateway.metric("switchyard_replica_running", **labels) == 0.0, timeout=30,
               what="the SmolLM2 replica to be idle")
    body = {"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 400, "min_tokens": 400}
    done = threading.Event()

    def generate() -> None:
        try:
            httpx.post(f"{cpu_gateway.url}/v1/completions", json=body, timeout=300)
        finally:
            done.set()

    worker = threading.Thread(target=generate)
    worker.start()
    try:
        wait_until(lambda: cpu_gateway.metric("switchyard_replica_running", **labels) >= 1.0 or done.is_set(),
                   timeout=60, what="the scraped running gauge to rise")
        assert not done.is_set(), "the request finished before the scraper saw it run"
        assert cpu_gateway.metric("switchyard_replica_kv_cache_usage", **labels) > 0.0
    finally:
        worker.join()
    wait_until(lambda: cpu_gateway.metric("switchyard_replica_running", **labels) == 0.0, timeout=30,
               what="the scraped running gauge to fall back to 0")
    replica, = (r for r in cpu_gateway.gateway.pool.replicas(backend) if r.url == url)
    assert replica.load.token_gaps > 0 and 0.0 < replica.load.token_gap_seconds / replica.load.token_gaps < 10.0
