"""The simulator's run-time fault switch: `POST /sim/fault`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from service.sim.server import SIMULATOR, SimSettings, build_sim_app


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_sim_app(SimSettings(fault="error", fault_rate=0.5)))) as test_client:
        yield test_client


async def test_a_fault_is_switched_at_run_time(client: TestClient) -> None:
    response = await client.post("/sim/fault", json={"mode": "hang", "rate": 0.25})
    assert response.status == 200 and await response.json() == {"mode": "hang", "rate": 0.25}
    settings = client.app[SIMULATOR].settings
    assert (settings.fault, settings.fault_rate) == ("hang", 0.25)


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'"error"', b'{"mode": "error", "rate": "x"}',
                                  b'{"mode": "error", "rate": 5}', b'{"mode": "error", "rate": true}',
                                  b'{"mode": "explode"}', b'{"mode": ["error"]}'])
async def test_a_bad_body_is_a_400_that_changes_nothing(client: TestClient, body: bytes) -> None:
    response = await client.post("/sim/fault", data=body)
    assert response.status == 400
    assert isinstance((await response.json())["error"], str)
    settings = client.app[SIMULATOR].settings
    assert (settings.fault, settings.fault_rate) == ("error", 0.5)
