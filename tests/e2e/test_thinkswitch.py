"""The reasoning-mode switch through the gateway to real vLLM: the rewritten request is accepted and reported."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.e2e.conftest import CPU_CONFIG, Backends
from tests.harness import GatewayServer


def ask(gateway: GatewayServer, text: str, model: str = "reasoner", **extra: object) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=300, json={
        "model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8, **extra})


def test_switcher_decides_and_vllm_accepts_the_rewrite(cpu_gateway: GatewayServer) -> None:
    response = ask(cpu_gateway, "Natalia sold clips to 48 of her friends in April, and then she sold half as many "
                                "clips in May. How many clips did Natalia sell altogether in April and May?")
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-thinking"] in ("short", "long")
    assert response.headers["x-switchyard-strategy"] == "thinkswitch"
    assert response.json()["choices"][0]["message"]["content"] is not None


def test_client_mode_wins_and_short_mode_prefills_an_empty_thought(cpu_gateway: GatewayServer) -> None:
    before = cpu_gateway.metric("switchyard_thinking_mode_total", model="reasoner", mode="short")
    response = ask(cpu_gateway, "What is 2 + 2?", chat_template_kwargs={"enable_thinking": False})
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-thinking"] == "short"
    assert cpu_gateway.metric("switchyard_thinking_mode_total", model="reasoner", mode="short") == before + 1


@pytest.fixture(scope="module")
def reasoner_variants(backends: Backends) -> Iterator[GatewayServer]:
    """deploy/local/cpu.yaml plus two variants of its reasoner: `thinker` sends everything long, with the
    short retry; `r1` is of the deepseek-r1 family and sends everything short (predicted gains are below 1)."""
    config = yaml.safe_load(CPU_CONFIG.read_text())
    reasoner = next(m for m in config["models"] if m["name"] == "reasoner")["strategy"]
    variants = {"thinker": {"tau": -1.0, "short_retry": True}, "r1": {"family": "deepseek-r1", "tau": 2.0}}
    for name, thinking in variants.items():
        config["models"].append({"name": name, "strategy": {**reasoner, "thinking": {**reasoner["thinking"],
                                                                                   **thinking}}})
    with GatewayServer(config) as server:
        yield server


def test_a_long_answer_cut_at_max_tokens_is_answered_again_in_short_mode(reasoner_variants: GatewayServer) -> None:
    retries = reasoner_variants.metric("switchyard_thinking_short_retries_total", model="thinker", result="answered")
    response = ask(reasoner_variants, "Explain step by step why the sky is blue.", model="thinker")
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-thinking"] == "long"
    assert response.headers["x-switchyard-thinking-retry"] == "short"
    body = response.json()
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] == 8 + 8  # vLLM stopped both calls at max_tokens
    assert reasoner_variants.metric("switchyard_thinking_short_retries_total", model="thinker",
                                    result="answered") == retries + 1


def test_a_cut_long_stream_that_vllm_sent_as_content_ends_as_it_came(reasoner_variants: GatewayServer) -> None:
    """Gemma, served without a reasoning parser, streams its answer as content: once part of it has reached
    the client, no short answer may follow it (the continuation itself is tested on the simulator, which
    streams a cut answer as reasoning, as vLLM's parser does)."""
    before = reasoner_variants.metric("switchyard_thinking_short_retries_total", model="thinker")
    with httpx.stream("POST", reasoner_variants.url + "/v1/chat/completions", timeout=300, json={
            "model": "thinker", "messages": [{"role": "user", "content": "Explain why the sky is blue."}],
            "max_tokens": 8, "stream": True, "stream_options": {"include_usage": True}}) as streamed:
        assert streamed.status_code == 200
        events = [line[len("data: "):] for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    chunks = [json.loads(event) for event in events[:-1]]
    assert len({chunk["id"] for chunk in chunks}) == 1
    finishes = [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c.get("finish_reason")]
    assert finishes == ["length"]  # the cut answer's own
    assert any(c["delta"].get("content") for chunk in chunks for c in chunk["choices"])
    assert chunks[-1]["usage"]["completion_tokens"] == 8  # one call
    assert reasoner_variants.metric("switchyard_thinking_short_retries_total", model="thinker") == before


def test_vllm_continues_the_deepseek_r1_short_mode_prefill(reasoner_variants: GatewayServer) -> None:
    response = ask(reasoner_variants, "What is 2 + 2?", model="r1")
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-thinking"] == "short"
    body = response.json()
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["completion_tokens"] >= 1
