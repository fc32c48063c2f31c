"""Cool-Fusion end to end: SmolLM2-135M-Instruct and Gemma-3-270M (different vocabularies) write one
answer together through the gateway's public model `fusion` (deploy/local/cpu.yaml)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import yaml

from service.config import parse_settings
from service.gateway import Gateway
from service.strategies.fusion.members import Member
from tests.e2e.conftest import CPU_CONFIG, Backends
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


LONG_QUESTION = [{"role": "user", "content": "A farmer keeps sheep, goats and a few cows on a hill farm. In winter "
                  "the animals stay in a barn, and the farmer has to plan how much hay each of them eats, how "
                  "much water they need, and how to keep the barn warm and dry. Explain briefly how to plan it."}]


def test_a_long_context_is_scored_by_forced_tokens(cpu_gateway: GatewayServer) -> None:
    response = post(cpu_gateway, "/v1/chat/completions", {"messages": LONG_QUESTION, "max_tokens": 24})
    assert response.status_code == 200, response.text
    fusion = check_usage(response.json()["usage"], "cool")
    # Both members' contexts pass `forced_from_tokens` (64): every scoring call read the prefix cache.
    assert set(fusion["scoring"]) == {"forced"} and fusion["scoring"]["forced"] >= 2


@pytest.mark.parametrize("backend", sorted(MEMBERS))
async def test_forced_scores_are_the_echo_scores(backends: Backends, backend: str) -> None:
    """The two scoring methods read the same numbers from real vLLM, tokens and log-probabilities alike,
    across the context's end and for characters outside ASCII."""
    config = yaml.safe_load(CPU_CONFIG.read_text())
    config["models"] = [m for m in config["models"] if m["strategy"]["kind"] == "direct"]
    gateway = Gateway(parse_settings(config))
    await gateway.start()
    try:
        member = Member(backend, gateway.dispatcher)
        prompt = await member.render_chat([{"role": "user", "content": "Why is the sky blue? Be naïve: 3 €."}])
        for answer, candidates in [("", ["The sky is blue", " Well, it's Rayleigh scattering."]),
                                   ("The sky is blue because", [" of Rayleigh  scattering,", "\nthe café's 3 €"])]:
            echo = await member.score_echo(prompt, answer, candidates)
            by_force = await member.score_forced(prompt, answer, candidates)
            assert by_force is not None
            for e, f in zip(echo, by_force, strict=True):
                assert f.starts == e.starts
                assert f.logprobs == pytest.approx(e.logprobs, abs=0.05)
    finally:
        await gateway.close()
