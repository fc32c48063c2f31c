"""The Grafana dashboard imports anywhere (datasource chosen at import) and shows what operators need."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .promql import DASHBOARD, dashboard_exprs, selectors

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def datasource_refs(node: Any) -> Iterator[Any]:
    """Every `datasource` value anywhere in the JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasource_refs(item)


def test_datasource_is_a_template_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    builtin = {"type": "grafana", "uid": "-- Grafana --"}
    assert all(ref in (DATASOURCE, builtin) for ref in datasource_refs(dashboard)), "no hard-coded datasource"
    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def test_layout_has_unique_ids_and_no_overlapping_panels(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area


def test_every_query_parses_and_uses_the_namespace_variable(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        for target in panel["targets"]:
            assert selectors(target["expr"], panel["title"]), panel["title"]
            assert 'namespace="$namespace"' in target["expr"], panel["title"]
        assert panel["description"], panel["title"]


def test_dashboard_shows_traffic_latency_decisions_cache_and_backend_load(dashboard: dict[str, Any]) -> None:
    exprs = [expr for expr, _ in dashboard_exprs()]
    metrics = {s.metric for expr in exprs for s in selectors(expr, "dashboard")}
    assert {
        "switchyard_requests_total",                    # request rate and errors by public model
        "switchyard_request_duration_seconds_bucket",   # latency p50/p99
        "switchyard_overhead_seconds_bucket",           # gateway overhead
        "switchyard_decisions_total",                   # routing share per candidate
        "switchyard_thinking_mode_total",               # reasoning-mode share
        "switchyard_fusion_steps_total",                # fusion steps
        "switchyard_cache_requests_total",              # decision-cache hit rate
        "vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",  # backend load
    } <= metrics
    latency = [e for e in exprs if "switchyard_request_duration_seconds_bucket" in e]
    assert any("histogram_quantile(0.5," in e for e in latency)
    assert any("histogram_quantile(0.99," in e for e in latency)
    per_replica = [e for e in exprs if "vllm:" in e]
    assert all("pod" in e for e in per_replica), "backend load is shown per replica"
