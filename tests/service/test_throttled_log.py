"""Warnings that repeat on every request are logged once per interval, per key."""

from __future__ import annotations

import logging

import pytest

from service.throttled_log import ThrottledLog


def test_one_keys_repeats_are_held_back_and_counted_without_hiding_another_key(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttled = ThrottledLog(logging.getLogger("test"), every_s=30, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test"):
        for _ in range(3):
            throttled.warning("backend %s failed", "a", key="a")
        throttled.warning("backend %s failed", "b", key="b")  # another backend's first: logged
        throttled.warning("cache down")
        throttled.warning("cache down")
        now[0] = 31.0
        throttled.warning("backend %s failed", "a", key="a")
    assert [r.getMessage() for r in caplog.records] == [
        "backend a failed", "backend b failed", "cache down", "backend a failed (2 similar warnings not logged)"]
