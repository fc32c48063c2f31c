"""Cool-Fusion end to end: SmolLM2-135M-Instruct and Gemma-3-270M (different vocabularies) write one
answer together through the gateway's public model `fusion` (deploy/local/cpu.yaml)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from tests.harness import GatewayServer

MEMBERS = {"smollm2-135m-instruct", "gemma3-270m"}
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


def post(gateway: GatewayServer, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json={"model": "fusion", "temperature": 0, **body}, timeout=300)


def check_usage(usage: dict[str, Any], variant: str) -> dict[str, Any]:
    fusion = usage["fusion"]
    assert fusion["variant"] == variant
    assert usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert fusion["steps"] >= 1 and fusion["member_calls"] >= 2 + 2 * fusion["steps"]
    assert set(fusion["selected"]) <= MEMBERS and sum(fusion["selected"].values()) == fusion["steps"]
    assert fusion["dropped"] == []
    return dict(fusion)


def test_chat_answer_is_written_by_both_members(cpu_gateway: GatewayServer) -> None:
    response = post(cpu_gateway, "/v1/chat/completions", {"messages": QUESTION, "max_tokens": 24})
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-strategy"] == "fusion"
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "fusion"
    choice = body["choices"][0]
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    fusion = check_usage(body["usage"], "cool")
    assert body["usage"]["completion_tokens"] <= 24
    assert cpu_gateway.metric("switchyard_fusion_steps_total", model="fusion") >= fusion["steps"]
    for member in MEMBERS:  # both drafted and both scored: real log-probabilities from both vocabularies
        assert cpu_gateway.metric("switchyard_fusion_member_calls_total", member=member, phase="score") >= 1


def test_streamed_chunks_are_well_formed(cpu_gateway: GatewayServer) -> None:
    body = {"model": "fusion", "messages": QUESTION, "max_tokens": 24, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{cpu_gateway.url}/v1/chat/completions", json=body, timeout=300) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [orjson.loads(line[len("data: "):]) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.strip()
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    assert chunks[-1]["choices"] == []
    check_usage(chunks[-1]["usage"], "cool")


def test_completion_with_cool_r_reranks_full_answers(cpu_gateway: GatewayServer) -> None:
    response = post(cpu_gateway, "/v1/completions", {
        "prompt": "The capital of France is", "max_tokens": 12, "switchyard_variant": "cool+r"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"].strip()
    fusion = check_usage(body["usage"], "cool+r")
    assert fusion["chosen"] in MEMBERS | {"fusion"}
