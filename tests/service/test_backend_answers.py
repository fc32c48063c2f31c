"""Answers no vLLM gives, from a backend that is something else (a wrong URL, a proxy in between): the
gateway never passes them on as a success, and the replica is counted against."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from service.config import parse_settings
from service.errors import UpstreamError
from service.gateway import Gateway
from tests.harness import Canned, CannedBackend, GatewayServer, direct_config, wait_until


@pytest.fixture(scope="module")
def fake() -> Iterator[CannedBackend]:
    backend = CannedBackend()
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def gateway(fake: CannedBackend) -> Iterator[GatewayServer]:
    # The one replica stays in service between the cases.
    config = direct_config({"m": [fake.url]}, dispatch={"breaker_failures": 1000})
    with GatewayServer(config) as server:
        yield server


def chat(gateway: GatewayServer, stream: bool = False) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=10, json={
        "model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream})


SSE = "text/event-stream"


@pytest.mark.parametrize(("canned", "stream", "says"), [
    (Canned(content_type="text/html", body=b"<html>oops</html>"), False, "not a JSON object"),
    (Canned(body=b"[1, 2]"), False, "not a JSON object"),
    (Canned(status=302, body=b""), False, "answered 302"),
    (Canned(status=204, body=b""), False, "answered 204"),
    (Canned(body=b'{"choices": []}'), True, "without a stream to a streamed request"),
    (Canned(content_type=SSE, body=b"data: {}\n\ndata: [DONE]\n\n"), False, "with a stream where none was asked"),
], ids=["html", "json-array", "302", "204", "json-for-stream", "stream-for-json"])
def test_an_answer_no_vllm_gives_is_a_bad_gateway(fake: CannedBackend, gateway: GatewayServer, canned: Canned,
                                                   stream: bool, says: str) -> None:
    fake.canned = canned
    counted = gateway.metric("switchyard_upstream_errors_total", backend="m", kind="status")
    answered = gateway.metric("switchyard_requests_total", model="m", backend="m", status="502")
    response = chat(gateway, stream=stream)
    assert response.status_code == 502, response.text
    assert response.headers["content-type"] == "application/json"
    assert says in response.json()["error"]["message"]
    assert gateway.metric("switchyard_upstream_errors_total", backend="m", kind="status") == counted + 1
    # Counted against the backend that failed (the recorder finishes after the answer has left).
    wait_until(lambda: gateway.metric("switchyard_requests_total", model="m", backend="m", status="502")
               == answered + 1, what="the 502 counted against m")


def test_a_backends_error_sent_as_a_stream_reaches_the_client_as_an_error(fake: CannedBackend,
                                                                         gateway: GatewayServer) -> None:
    fake.canned = Canned(status=400, content_type=SSE, body=b'{"error": {"message": "bad temperature"}}')
    response = chat(gateway, stream=True)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "bad temperature"


def test_a_backends_retry_after_is_passed_on(fake: CannedBackend, gateway: GatewayServer) -> None:
    fake.canned = Canned(status=429, body=b'{"error": {"message": "slow down"}}', headers={"Retry-After": "7"})
    response = chat(gateway)
    assert response.status_code == 429 and response.headers["retry-after"] == "7"
    assert response.json()["error"]["message"] == "slow down"


async def test_a_cut_json_answer_to_a_composed_call_is_the_backends_failure(fake: CannedBackend) -> None:
    fake.canned = Canned(body=b'{"choices": [')
    gateway = Gateway(parse_settings(direct_config({"m": [fake.url]})))
    await gateway.start()
    try:
        with pytest.raises(UpstreamError, match="backend 'm' answered 200 with a body that is not JSON") as caught:
            await gateway.dispatcher.post_json("m", "/v1/completions", {"prompt": "hi"})
        assert caught.value.backend == "m"
    finally:
        await gateway.close()


def test_a_buffered_answer_over_the_limit_is_a_502_not_retried_and_not_the_replicas_fault() -> None:
    first, second = CannedBackend(), CannedBackend()
    try:
        big = b'{"choices": [{"text": "' + b"x" * 10_000 + b'"}]}'
        first.canned = second.canned = Canned(body=big)
        config = direct_config({"m": [first.url, second.url]}, dispatch={"max_response_bytes": 4096})
        with GatewayServer(config) as gateway:
            response = chat(gateway)
            assert response.status_code == 502 and response.json()["error"]["code"] == "answer_too_large"
            assert response.headers["x-should-retry"] == "false"  # nor by the client: openai-python reads it
            assert "dispatch.max_response_bytes" in response.json()["error"]["message"]
            assert first.posts + second.posts == 1  # another replica would answer as much
            assert gateway.metric("switchyard_upstream_errors_total", backend="m") == 0
            first.canned = second.canned = Canned(body=b'{"choices": []}')
            assert chat(gateway).status_code == 200  # within the limit
            # an error answer is read only as far as its message: a large one still says what failed
            dead = b'{"error": {"message": "engine dead"}}' + b" " * 200_000
            first.canned = second.canned = Canned(status=500, body=dead)
            failed = chat(gateway)
            assert failed.status_code == 502 and "engine dead" in failed.json()["error"]["message"]
    finally:
        first.close()
        second.close()
