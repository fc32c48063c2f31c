"""A short fault soak: replicas crash, hang and drop streams, Redis restarts, and no request is lost."""

from __future__ import annotations

import pytest

from bench.soak import run_soak

pytestmark = pytest.mark.slow


def test_short_soak_loses_nothing_and_memory_stays_bounded() -> None:
    concurrency = 8
    report = run_soak(duration=24.0, concurrency=concurrency, seed=1)
    summary = "\n".join(report.lines())
    assert report.lost == 0, summary
    assert report.gateway_alive, summary
    # Every fault was live while traffic flowed, and the dropped streams surfaced as clean errors.
    assert all(sum(tally.counts.values()) > 0 for tally in report.phases.values()), summary
    assert report.phases["streams dropped"].counts["failed_clean"] > 0, summary
    assert report.total["succeeded"] > 0.9 * sum(report.total.values()), summary
    assert report.rss_end - report.rss_start < 32 * 2**20, summary
    # Pooled connections, not leaked ones: one per client and replica at most, plus the fixed ones.
    assert report.fds_end <= report.fds_start + 4 * concurrency + 8, summary
