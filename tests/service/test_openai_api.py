"""The gateway through the official `openai` client (sync and async, streaming and not), over real HTTP."""

from __future__ import annotations

import re
import time

import httpx
import openai
import pytest

from tests.harness import GatewayServer, SimProcess, direct_config, sims


def client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)


def test_models_lists_public_models(gateway: GatewayServer) -> None:
    assert sorted(m.id for m in client(gateway).models.list()) == ["sim-a", "sim-b"]


def test_models_retrieve_one_public_model(gateway: GatewayServer) -> None:
    model = client(gateway).models.retrieve("sim-b")
    assert (model.id, model.object, model.owned_by) == ("sim-b", "model", "switchyard")
    with pytest.raises(openai.NotFoundError) as missing:
        client(gateway).models.retrieve("gpt-17")
    assert missing.value.code == "model_not_found"


def test_every_answer_carries_a_request_id_that_reaches_the_backend(gateway: GatewayServer,
                                                                      two_sims: list[SimProcess]) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="sim-a", messages=[{"role": "user", "content": "hello"}], max_tokens=2)
    rid = raw.headers["x-request-id"]
    assert "server" not in raw.headers  # the gateway does not name its web server
    assert re.fullmatch(r"req_[0-9a-f]{24}", rid) and raw.parse()._request_id == rid  # what the SDK reads
    forwarded = two_sims[0].last_request()["request_id"]
    assert re.fullmatch(re.escape(rid) + r"-[0-9a-f]{6}", forwarded)  # one suffix per backend call
    mine = httpx.post(gateway.url + "/v1/chat/completions", headers={"X-Request-Id": "trace-42"},
                      json={"model": "sim-a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert mine.headers["x-request-id"] == "trace-42"
    assert two_sims[0].last_request()["request_id"].startswith("trace-42-")
    unusable = httpx.post(gateway.url + "/v1/chat/completions", headers={"X-Request-Id": "two words"},
                          json={"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]})
    assert unusable.status_code == 404 and unusable.headers["x-request-id"].startswith("req_")  # errors too
    listed = client(gateway).models.with_raw_response.list()
    assert re.fullmatch(r"req_[0-9a-f]{24}", listed.headers["x-request-id"])  # and every other path's answers
    missing = httpx.get(gateway.url + "/v1/models/gpt-17", headers={"X-Request-Id": "trace-43"})
    assert (missing.status_code, missing.headers["x-request-id"]) == (404, "trace-43")


def test_the_gateways_own_fields_do_not_reach_the_backend(gateway: GatewayServer,
                                                          two_sims: list[SimProcess]) -> None:
    client(gateway).chat.completions.create(
        model="sim-a", messages=[{"role": "user", "content": "hello"}], max_tokens=2,
        extra_body={"switchyard_tradeoff": 0.5, "switchyard_variant": "cool", "top_k": 3})
    forwarded = two_sims[0].last_request()["body"]
    assert forwarded["top_k"] == 3 and not any(name.startswith("switchyard_") for name in forwarded)


def test_chat_completion_sync(gateway: GatewayServer) -> None:
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="sim-a", messages=[{"role": "user", "content": "hello"}], max_tokens=5)
    completion = raw.parse()
    assert completion.choices[0].message.content == "the quick model answers with"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    assert raw.headers["x-switchyard-model"] == "sim-a"
    assert raw.headers["x-switchyard-strategy"] == "direct"


def test_completion_sync_reaches_the_named_backend(gateway: GatewayServer) -> None:
    completion = client(gateway).completions.create(model="sim-b", prompt="one two", max_tokens=3)
    assert completion.model == "sim-b"
    assert completion.choices[0].text == " the quick model"


def test_route_names_the_direct_backend_and_why(gateway: GatewayServer) -> None:
    decision = httpx.post(gateway.url + "/v1/route", json={"model": "sim-b", "prompt": "one two"}).json()
    assert decision == {"model": "sim-b", "strategy": "direct", "backend": "sim-b", "reason": "direct",
                        "cache": "off", "scores": {}, "headers": {}}


def test_chat_stream_with_usage(gateway: GatewayServer) -> None:
    stream = client(gateway).chat.completions.create(
        model="sim-b", messages=[{"role": "user", "content": "hi"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "the quick model answers"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


async def test_async_client_stream_and_not(gateway: GatewayServer) -> None:
    async_client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="unused", max_retries=0)
    completion = await async_client.completions.create(model="sim-a", prompt="x", max_tokens=2)
    assert completion.choices[0].text == " the quick"
    stream = await async_client.completions.create(model="sim-a", prompt="x", max_tokens=3, stream=True)
    pieces = [chunk.choices[0].text async for chunk in stream]
    assert "".join(pieces) == " the quick model"
    await async_client.close()


def test_unknown_fields_are_relayed_untouched(gateway: GatewayServer, two_sims: list[SimProcess]) -> None:
    extras = {"chat_template_kwargs": {"enable_thinking": False}, "top_k": 7, "prompt_logprobs": 0,
              "continue_final_message": True, "add_generation_prompt": False}
    client(gateway).chat.completions.create(
        model="sim-a", messages=[{"role": "user", "content": "hi"}], max_tokens=1, extra_body=extras)
    received = two_sims[0].last_request()["body"]
    for key, value in extras.items():
        assert received[key] == value
    assert received["model"] == "sim-a"


def test_echo_logprobs_scoring_call_is_relayed(gateway: GatewayServer) -> None:
    response = httpx.post(gateway.url + "/v1/completions", json={
        "model": "sim-a", "prompt": "score these words", "echo": True, "logprobs": 1, "max_tokens": 0})
    assert response.status_code == 200
    logprobs = response.json()["choices"][0]["logprobs"]
    assert logprobs["tokens"] == ["score", " these", " words"]
    assert logprobs["token_logprobs"][0] is None and len(logprobs["token_logprobs"]) == 3


def test_stream_first_token_arrives_before_the_stream_ends() -> None:
    """No buffering: with a slow decoder the first event is seen long before the last."""
    with sims("slow", tokens_per_s=20) as (slow,), GatewayServer(direct_config({"slow": [slow.url]})) as gw:
        with httpx.stream("POST", gw.url + "/v1/completions", timeout=10,
                          json={"model": "slow", "prompt": "x", "max_tokens": 20, "stream": True}) as response:
            arrivals = []
            started = time.perf_counter()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.perf_counter() - started)
    # 20 tokens at 20 tokens/s take about a second; a buffered stream would deliver them all at its end, a
    # relayed one has its first within the first half (in practice the first twentieth).
    assert len(arrivals) == 21
    assert arrivals[0] < arrivals[-1] / 2


@pytest.mark.parametrize("path", ["/health", "/ready"])
def test_ops_endpoints(gateway: GatewayServer, path: str) -> None:
    response = httpx.get(gateway.url + path)
    assert response.status_code == 200
