"""Reading metric names out of the PromQL in the dashboard, the rules and the adapter config."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser
import yaml

from .tools import DEPLOY

DASHBOARD = DEPLOY / "grafana" / "switchyard.json"
RULES = DEPLOY / "prometheus" / "rules.yaml"
ADAPTER = DEPLOY / "prometheus" / "adapter-rules.yaml"

# Grafana's interval macros are not PromQL; any duration stands in for them when parsing.
_GRAFANA_DURATION = re.compile(r"\$__(rate_interval|interval|range)\b")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.*),\s*)?(\w+)\)$", re.DOTALL)


@dataclass(frozen=True)
class Selector:
    """One series selector: the metric it names and the labels its matchers test."""

    metric: str
    labels: frozenset[str]
    source: str


def selectors(expr: str, source: str) -> list[Selector]:
    found: list[Selector] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            labels = frozenset(m.name for m in node.matchers.matchers if m.name != "__name__")
            found.append(Selector(node.name or "", labels, source))

    promql_parser.walk(promql_parser.parse(_GRAFANA_DURATION.sub("5m", expr)), pre_visit=visit)
    assert all(s.metric for s in found), f"{source}: selector without a metric name in {expr!r}"
    return found


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(PromQL, where) for every panel target and every query variable of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"], f"panel {panel['title']!r}"
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = _LABEL_VALUES.match(variable["query"]["query"])
            expected = "label_values(selector, label)"
            assert match and match.group(1), f"variable {variable['name']}: expected {expected}"
            yield match.group(1), f"variable {variable['name']!r}"


def rule_exprs() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["expr"], f"rule {rule.get('record') or rule.get('alert')}"


def recorded_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def adapter_exprs() -> Iterator[tuple[str, str]]:
    for rule in yaml.safe_load(ADAPTER.read_text())["rules"]["custom"]:
        yield rule["seriesQuery"], "prometheus-adapter seriesQuery"
