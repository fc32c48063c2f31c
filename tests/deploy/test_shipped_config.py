"""The gateway configuration the manifests ship works as the probes, Prometheus and clients use it."""

from __future__ import annotations

import httpx

from tests.harness import GatewayServer, wait_until

from .live import DEV_API_KEY


def test_probe_and_scrape_paths_need_no_key(shipped: GatewayServer) -> None:
    assert httpx.get(shipped.url + "/health", timeout=5).status_code == 200
    wait_until(lambda: httpx.get(shipped.url + "/ready", timeout=5).status_code == 200, what="readiness")
    assert httpx.get(shipped.url + "/metrics", timeout=5).status_code == 200


def test_api_needs_the_key_whose_hash_the_secret_holds(shipped: GatewayServer) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}
    url = shipped.url + "/v1/chat/completions"
    assert httpx.post(url, json=body, timeout=10).status_code == 401
    wrong = {"Authorization": "Bearer sk-not-the-key"}
    assert httpx.post(url, json=body, headers=wrong, timeout=10).status_code == 401
    right = {"Authorization": f"Bearer {DEV_API_KEY}"}
    reply = httpx.post(url, json=body, headers=right, timeout=10)
    assert reply.status_code == 200
    assert reply.json()["model"] == "smollm2-135m-instruct", "the backend's served model name"
