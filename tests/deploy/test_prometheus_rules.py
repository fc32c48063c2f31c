"""The alerting and recording rules pass promtool's checks and unit tests, and ship unchanged."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from .tools import DEPLOY, require_tool, run

RULES = DEPLOY / "prometheus" / "rules.yaml"
RULES_TEST = DEPLOY / "prometheus" / "rules_test.yaml"
PROMETHEUS_RULE = DEPLOY / "k8s" / "base" / "monitoring" / "prometheusrule.yaml"
REQUIRED_ALERTS = {"SwitchyardHighErrorRate", "SwitchyardHighLatencyP99", "SwitchyardHighGatewayOverhead",
                   "SwitchyardNoHealthyReplica", "SwitchyardDecisionCacheErrors",
                   "SwitchyardCacheHitRateCollapse", "SwitchyardBackendQueueSaturated", "SwitchyardGatewayDown",
                   "SwitchyardBackendsSaturated"}


def load_builder() -> ModuleType:
    path = DEPLOY / "prometheus" / "build_prometheusrule.py"
    spec = importlib.util.spec_from_file_location("build_prometheusrule", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rules(path: Path) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def test_promtool_check_rules() -> None:
    output = run(require_tool("promtool"), "check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules(RULES))} rules found" in output


def test_promtool_unit_tests_pass() -> None:
    output = run(require_tool("promtool"), "test", "rules", str(RULES_TEST))
    assert "SUCCESS" in output


def test_every_alert_has_a_firing_unit_test() -> None:
    alerts = {r["alert"] for r in rules(RULES) if "alert" in r}
    assert alerts == REQUIRED_ALERTS
    tested = {case["alertname"] for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
              for case in test.get("alert_rule_test", []) if case["exp_alerts"]}
    assert tested == alerts


def test_alerts_say_what_and_how_bad() -> None:
    for rule in rules(RULES):
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]


def test_prometheusrule_object_is_generated_from_the_rules_file() -> None:
    builder = load_builder()
    stale = f"{PROMETHEUS_RULE.name} is stale: run python deploy/prometheus/build_prometheusrule.py"
    assert PROMETHEUS_RULE.read_text() == builder.render(RULES.read_text()), stale
    wrapped = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert wrapped["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]
