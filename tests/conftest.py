"""Shared fixtures: simulators and a gateway over them, all real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import GatewayServer, RedisServer, SimProcess, direct_config, sims


@pytest.fixture(scope="module")
def two_sims() -> Iterator[list[SimProcess]]:
    with sims("sim-a", "sim-b") as processes:
        yield processes


@pytest.fixture(scope="module")
def gateway(two_sims: list[SimProcess]) -> Iterator[GatewayServer]:
    config = direct_config({s.model: [s.url] for s in two_sims})
    with GatewayServer(config) as server:
        yield server


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()
