"""`auto` through the gateway to real vLLM, with the router trained on the local models' own answers."""

from __future__ import annotations

import httpx
import yaml

from tests.e2e.conftest import CPU_CONFIG, Backends
from tests.harness import GatewayServer, RedisServer

BACKENDS = {"smollm2-135m-instruct", "gemma3-270m"}


def test_auto_routes_to_a_real_backend(cpu_gateway: GatewayServer) -> None:
    question = {"model": "auto", "messages": [{"role": "user", "content": "What is 7 plus 5? Answer with a number."}]}
    decision = httpx.post(cpu_gateway.url + "/v1/route", json=question, timeout=60).json()
    assert set(decision["scores"]) == BACKENDS and decision["backend"] in BACKENDS
    response = httpx.post(cpu_gateway.url + "/v1/chat/completions", json={**question, "max_tokens": 8}, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-model"] == decision["backend"]
    assert response.headers["x-switchyard-cache"] == "hit"  # /v1/route cached the decision
    assert response.json()["choices"][0]["message"]["content"]


def test_two_gateways_share_decisions_through_redis_and_forward_request_ids(backends: Backends,
                                                                            redis_server: RedisServer) -> None:
    """The deployment's shape: gateway replicas over real vLLM, sharing one Redis decision cache."""
    config = yaml.safe_load(CPU_CONFIG.read_text())
    config["cache"] = {"redis_url": redis_server.url, "timeout_s": 2.0}
    question = {"model": "auto", "max_tokens": 4,
                "messages": [{"role": "user", "content": "Name a primary colour. Answer in one word."}]}
    with GatewayServer(config) as one, GatewayServer(config) as two:
        first = httpx.post(one.url + "/v1/chat/completions", json=question, timeout=300,
                           headers={"X-Request-Id": "e2e-shared-1"})
        second = httpx.post(two.url + "/v1/chat/completions", json=question, timeout=300)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.headers["x-switchyard-cache"] == "miss" and second.headers["x-switchyard-cache"] == "hit"
    assert first.headers["x-switchyard-model"] == second.headers["x-switchyard-model"]
    assert first.headers["x-request-id"] == "e2e-shared-1"  # and vLLM took it as its request id
