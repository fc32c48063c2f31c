"""Every metric the dashboard, the rules and the autoscaler read is one that really gets exported.

"Really" means: scraped from a running gateway (the shipped configuration, over simulators) after
it served traffic, or one of vLLM's documented metric names.
"""

from __future__ import annotations

import httpx
import pytest

from tests.harness import GatewayServer, metric_value

from .exported import SCRAPE_SERIES, TARGET_LABELS, exposition_names, gateway_metrics, vllm_metrics
from .live import DEV_API_KEY
from .promql import Selector, adapter_exprs, dashboard_exprs, recorded_names, rule_exprs, selectors
from .tools import K8S

SOURCES = {"dashboard": dashboard_exprs, "rules": rule_exprs, "adapter": adapter_exprs}


def unknown(found: list[Selector], exported: dict[str, frozenset[str]], recorded: set[str]) -> list[str]:
    """Problems: metrics nobody exports, or matchers on labels the metric does not carry."""
    problems = []
    for selector in found:
        if selector.metric in recorded:
            continue
        if selector.metric not in exported:
            problems.append(f"{selector.source}: {selector.metric} is not exported")
        elif stray := selector.labels - exported[selector.metric] - TARGET_LABELS:
            problems.append(f"{selector.source}: {selector.metric} has no label {sorted(stray)}")
    return problems


@pytest.fixture(scope="module")
def scraped(shipped: GatewayServer) -> str:
    """The gateway's /metrics after it served a buffered and a streamed request for every public model."""
    headers = {"Authorization": f"Bearer {DEV_API_KEY}"}
    questions = ["hi", "write code to sort a list", "prove there are infinitely many primes please", "hi"]
    for model in shipped.settings.models:
        for stream, question in zip((False, True, False, True), questions, strict=True):
            body = {"model": model.name, "messages": [{"role": "user", "content": question}], "stream": stream}
            reply = httpx.post(shipped.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)
            assert reply.status_code == 200, reply.text
    return httpx.get(shipped.url + "/metrics", timeout=5).text


def test_running_gateway_exports_what_service_metrics_declares(scraped: str) -> None:
    assert exposition_names(scraped) == set(gateway_metrics())
    for model in ("smollm2", "gemma3", "auto", "reasoner"):
        assert metric_value(scraped, "switchyard_requests_total", model=model, status="200") == 4
        assert metric_value(scraped, "switchyard_overhead_seconds_count", model=model) == 4
        assert metric_value(scraped, "switchyard_time_to_first_byte_seconds_count", model=model) == 2  # streams


def test_decisions_fill_the_dashboard_panels_and_the_cache_reaches_redis(scraped: str) -> None:
    """The routing-share, reasoning-share and cache panels have data; Redis answers with the password."""
    assert metric_value(scraped, "switchyard_decisions_total", model="auto", backend="gemma3") >= 1
    assert metric_value(scraped, "switchyard_decisions_total", model="auto", backend="smollm2") >= 1
    assert metric_value(scraped, "switchyard_thinking_mode_total", model="reasoner", mode="long") >= 1
    assert metric_value(scraped, "switchyard_thinking_mode_total", model="reasoner", mode="short") >= 1
    assert metric_value(scraped, "switchyard_cache_requests_total", result="hit") >= 2, "repeated question"
    assert metric_value(scraped, "switchyard_cache_requests_total", result="error") == 0


@pytest.mark.parametrize("source", SOURCES)
def test_every_metric_read_is_exported(scraped: str, source: str) -> None:
    found = [s for expr, where in SOURCES[source]() for s in selectors(expr, where)]
    assert found
    declared = gateway_metrics()
    exported = {name: declared[name] for name in exposition_names(scraped)} | vllm_metrics() | SCRAPE_SERIES
    assert unknown(found, exported, recorded_names()) == []


def test_the_check_catches_a_renamed_metric_and_a_wrong_label() -> None:
    exported = gateway_metrics() | vllm_metrics()
    typo = selectors('sum(rate(switchyard_request_total{namespace="x"}[5m]))', "probe")
    wrong_label = selectors('vllm:num_requests_waiting{model="m"}', "probe")
    removed_name = selectors("vllm:gpu_cache_usage_perc", "probe")
    assert len(unknown(typo + wrong_label + removed_name, exported, set())) == 3


def test_autoscaler_metric_is_the_gateway_gauge(scraped: str) -> None:
    hpa_text = (K8S / "base" / "gateway" / "hpa.yaml").read_text()
    assert "name: switchyard_in_flight_requests" in hpa_text
    assert "# TYPE switchyard_in_flight_requests gauge" in scraped
