"""Through the gateway to real vLLM: chat, completions, streaming with usage, vLLM extras relayed."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI

from tests.e2e.conftest import PUBLIC_MODELS
from tests.harness import GatewayServer


@pytest.fixture(scope="module")
def client(cpu_gateway: GatewayServer) -> OpenAI:
    return OpenAI(base_url=f"{cpu_gateway.url}/v1", api_key="unused", timeout=120, max_retries=0)


@pytest.mark.parametrize("model", sorted(PUBLIC_MODELS))
def test_chat_completion(client: OpenAI, model: str) -> None:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert 1 <= reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


@pytest.mark.parametrize("model", sorted(PUBLIC_MODELS))
def test_completion(client: OpenAI, model: str) -> None:
    reply = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8,
                                      temperature=0)
    assert reply.object == "text_completion"
    assert reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens <= 8


@pytest.mark.parametrize("model", sorted(PUBLIC_MODELS))
def test_streaming_chat_reports_usage_last(client: OpenAI, model: str) -> None:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=16,
        temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    *content, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None for c in content)
    assert 1 <= last.usage.completion_tokens <= 16


def test_stream_ends_with_done_marker(cpu_gateway: GatewayServer) -> None:
    body = {"model": "smollm2", "prompt": "One, two,", "max_tokens": 6, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", f"{cpu_gateway.url}/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 6  # no stop string can end "One, two," sooner than 6 tokens here
    pieces = [json.loads(e)["choices"] for e in events[:-2]]
    assert all(len(p) == 1 for p in pieces)


def test_chat_template_kwargs_reach_the_template(client: OpenAI) -> None:
    """Gemma's template (deploy/k8s/base/vllm/gemma3-chat-template.jinja) prefills an empty thinking block when
    `chat_template_kwargs.enable_thinking` is false: a longer prompt proves the gateway relayed it."""
    messages = [{"role": "user", "content": "Hello there."}]

    def prompt_tokens(extra: dict[str, object]) -> int:
        reply = client.chat.completions.create(model="gemma3", messages=messages, max_tokens=1,
                                               temperature=0, extra_body=extra)
        assert reply.usage is not None
        return reply.usage.prompt_tokens

    plain = prompt_tokens({})
    assert prompt_tokens({"chat_template_kwargs": {"enable_thinking": False}}) > plain
    assert prompt_tokens({"chat_template_kwargs": {"enable_thinking": True}}) == plain


def test_vllm_sampling_extras_are_relayed(client: OpenAI) -> None:
    """`min_tokens` is vLLM-only: honoured, it forces exactly `max_tokens` tokens past any early stop."""
    reply = client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Say OK."}], max_tokens=24, temperature=0,
        extra_body={"min_tokens": 24, "top_k": 1, "repetition_penalty": 1.0})
    assert reply.usage is not None and reply.usage.completion_tokens == 24


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_vllm_refuses_is_a_400_in_the_openai_shape(cpu_gateway: GatewayServer, stream: bool) -> None:
    """Past the gateway's checks but over the model's context: vLLM's own message, in the OpenAI shape."""
    response = httpx.post(f"{cpu_gateway.url}/v1/chat/completions", timeout=120, json={
        "model": "smollm2", "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 4096, "stream": stream})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "400"
    assert "max_tokens" in error["message"] and "2048" in error["message"]  # vLLM names the limit
