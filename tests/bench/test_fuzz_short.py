"""Hostile input against a live `switchyard serve` process: each case answered cleanly, others still served."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bench.fuzz import CASES, live_gateway, run_case


@pytest.fixture(scope="module")
def gateway_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with live_gateway(tmp_path_factory.mktemp("fuzz")) as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_request_is_answered_cleanly_without_harming_others(gateway_port: int, name: str) -> None:
    problem = asyncio.run(run_case(gateway_port, CASES[name]))
    assert problem is None, problem
