"""Lines of the benchmark reports: compare.py's header and decision_latency.py's verdicts."""

from __future__ import annotations

from bench.compare import version_lines
from bench.decision_latency import verdicts


def test_compare_has_no_empty_versions_line_without_litellm_or_vllm_router() -> None:
    assert version_lines(["direct", "switchyard-direct", "switchyard-auto"]) == []


def test_decision_latency_says_met_or_missed_per_target() -> None:
    ms = 0.001
    met = verdicts(inference=[1.0 * ms] * 3, uncached=[2.5 * ms] * 3, cached=[0.4 * ms] * 3)
    assert [line.split(": ")[1].split()[0] for line in met] == ["met", "met"]
    missed = verdicts(inference=[1.0 * ms] * 3, uncached=[3.5 * ms] * 3, cached=[1.5 * ms] * 3)
    assert [line.split(": ")[1].split()[0] for line in missed] == ["missed", "missed"]
    assert "cached through Redis p50 <= 1 ms" in missed[0] and "router inference + 2 ms" in missed[1]
