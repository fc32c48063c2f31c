"""The reasoning-mode switch through the gateway to real vLLM: the rewritten request is accepted and reported."""

from __future__ import annotations

import httpx

from tests.harness import GatewayServer


def ask(gateway: GatewayServer, text: str, **extra: object) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=300, json={
        "model": "reasoner", "messages": [{"role": "user", "content": text}], "max_tokens": 8, **extra})


def test_switcher_decides_and_vllm_accepts_the_rewrite(cpu_gateway: GatewayServer) -> None:
    response = ask(cpu_gateway, "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                                "clips in May. How many clips did Natalia sell altogether in April and May?")
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-thinking"] in ("short", "long")
    assert response.headers["x-switchyard-strategy"] == "thinkswitch"
    assert response.json()["choices"][0]["message"]["content"] is not None


def test_client_mode_wins_and_short_mode_prefills_an_empty_thought(cpu_gateway: GatewayServer) -> None:
    response = ask(cpu_gateway, "What is 2 + 2?", chat_template_kwargs={"enable_thinking": False})
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-thinking"] == "short"
    mode = cpu_gateway.metric("switchyard_thinking_mode_total", model="reasoner", mode="short")
    assert mode >= 1
