"""`auto` through the gateway to real vLLM, with the router trained on the local models' own answers."""

from __future__ import annotations

import httpx

from tests.harness import GatewayServer

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
