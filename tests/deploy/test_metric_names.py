"""Every metric the dashboard, the rules and the autoscaler read is one that really gets exported."""

from __future__ import annotations

import pytest

from .exported import TARGET_LABELS, gateway_metrics, vllm_metrics
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


def test_gateway_declares_the_metrics_the_issue_names() -> None:
    exported = gateway_metrics()
    assert exported["switchyard_requests_total"] == {"model", "backend", "status"}
    assert exported["switchyard_request_duration_seconds_bucket"] == {"model", "le"}
    assert exported["switchyard_in_flight_requests"] == {"model"}


@pytest.mark.parametrize("source", SOURCES)
def test_every_metric_read_is_exported(source: str) -> None:
    found = [s for expr, where in SOURCES[source]() for s in selectors(expr, where)]
    assert found
    exported = gateway_metrics() | vllm_metrics()
    assert unknown(found, exported, recorded_names()) == []


def test_the_check_catches_a_renamed_metric_and_a_wrong_label() -> None:
    exported = gateway_metrics() | vllm_metrics()
    typo = selectors('sum(rate(switchyard_request_total{namespace="x"}[5m]))', "probe")
    wrong_label = selectors('vllm:num_requests_waiting{model="m"}', "probe")
    removed_name = selectors("vllm:gpu_cache_usage_perc", "probe")
    assert len(unknown(typo + wrong_label + removed_name, exported, set())) == 3


def test_autoscaler_metric_is_the_gateway_gauge() -> None:
    hpa_text = (K8S / "base" / "gateway" / "hpa.yaml").read_text()
    assert "name: switchyard_in_flight_requests" in hpa_text
    assert "switchyard_in_flight_requests" in gateway_metrics()
