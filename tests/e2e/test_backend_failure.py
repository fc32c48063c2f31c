"""A vLLM server dies: the gateway notices, reports not ready, and answers a clean 503 at once.

The victim is a third SmolLM2 server on its own port (started with `--enforce-eager`, the quickest
start), so the shared backends the other tests use stay up.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from service.local_backends import process, stack
from service.local_backends.specs import SMOLLM2, Instance
from tests.e2e.conftest import Backends, bring_up
from tests.harness import GatewayServer, direct_config, free_port, wait_until


@pytest.fixture
def victim(backends: Backends) -> Iterator[Instance]:
    instance = Instance(spec=SMOLLM2, port=free_port(), cpu=0)
    bring_up(backends.cache, [instance], enforce_eager=True, timeout_s=600)
    yield instance
    stack.down(backends.cache, lambda line: None, ids=[instance.id])  # also clears a killed server's pid file


def test_killed_backend_is_reported_and_answered_with_503(backends: Backends, victim: Instance) -> None:
    config = direct_config({SMOLLM2.name: [victim.url]},
                           dispatch={"health_interval_s": 0.5, "breaker_cooldown_s": 30})
    config["models"] = [{"name": "victim", "strategy": {"kind": "direct", "backend": SMOLLM2.name}}]
    request = {"model": "victim", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    with GatewayServer(config) as gateway:
        assert httpx.get(f"{gateway.url}/ready", timeout=5).status_code == 200
        assert httpx.post(f"{gateway.url}/v1/chat/completions", json=request, timeout=120).status_code == 200

        record = process.read_record(backends.cache, process.record_path(backends.cache, victim.id))
        assert record is not None and record.alive
        os.killpg(record.pid, signal.SIGKILL)  # a crash, not a shutdown: no chance to close connections

        wait_until(lambda: httpx.get(f"{gateway.url}/ready", timeout=5).status_code == 503, timeout=30,
                   what="the gateway to report the killed backend")
        ready = httpx.get(f"{gateway.url}/ready", timeout=5).json()
        assert ready == {"ready": False, "models": {"victim": False}}
        assert gateway.metric("switchyard_replica_healthy", backend=SMOLLM2.name, replica=victim.url) == 0.0

        # A hang would raise ReadTimeout here; trying the dead replica anyway would give 502/504.
        response = httpx.post(f"{gateway.url}/v1/chat/completions", json=request, timeout=30)
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["type"] == "service_unavailable" and error["code"] == "no_healthy_replica"
        assert error["message"]
