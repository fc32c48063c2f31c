"""A gateway replica takes on a bounded number of requests and of request-body bytes; the rest are 503."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.api.admission import Admission
from service.api.hot_path import read_json_body
from service.errors import Overloaded
from tests.harness import GatewayServer, direct_config, sims, wait_until


def test_places_and_bytes_are_given_back_on_release() -> None:
    admission = Admission(max_requests=2, max_body_bytes=100)
    first, second = admission.enter(), admission.enter()
    with pytest.raises(Overloaded):
        admission.enter()
    first.hold(60)
    with pytest.raises(Overloaded):
        second.hold(41)
    second.hold(40)
    first.release()
    assert (admission.requests, admission.body_bytes) == (1, 40)
    admission.enter().hold(60)
    second.release()
    assert (admission.requests, admission.body_bytes) == (1, 60)


def chat(gateway: GatewayServer, words: int = 1, **extra: object) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/chat/completions", timeout=30, json={
        "model": "m", "messages": [{"role": "user", "content": "hi " * words}], "max_tokens": 2, **extra})


@pytest.mark.parametrize(("server", "held_words", "then_words"), [
    ({"max_concurrent_requests": 1}, 1, 1),  # one place, taken
    ({"max_body_bytes": 4096, "max_concurrent_body_bytes": 5000}, 1000, 1000),  # 3 KB held, 3 KB more asked
], ids=["requests", "body-bytes"])
def test_past_the_limits_a_request_is_503_and_is_served_again_once_there_is_room(
        server: dict[str, int], held_words: int, then_words: int) -> None:
    with sims("m", tokens_per_s=2) as (sim,), GatewayServer(direct_config({"m": [sim.url]}, server=server)) as gw:
        held = {"model": "m", "messages": [{"role": "user", "content": "hi " * held_words}], "max_tokens": 200,
                "stream": True}  # 100 s of tokens: held until this client leaves
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=held, timeout=30):
            wait_until(lambda: sim.last_request()["running"] == 1, what="the held request at the backend")
            refused = chat(gw, then_words)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "gateway_overloaded"
            assert gw.metric("switchyard_refused_requests_total", path="/v1/chat/completions", status="503") == 1
            if "max_concurrent_body_bytes" in server:
                assert chat(gw, 10).status_code == 200  # a small body still fits beside the held one
        wait_until(lambda: gw.metric("switchyard_in_flight_requests", model="m") == 0, what="the held one gone")
        assert chat(gw, then_words).status_code == 200  # the place and the bytes were given back


async def test_a_body_is_counted_as_it_arrives_its_declared_length_first() -> None:
    async def receive_in(chunks: list[bytes]) -> Any:
        messages = iter([{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                         for i, c in enumerate(chunks)])

        async def receive() -> Any:
            return next(messages)
        return receive

    held: list[int] = []
    declared = {"content-type": "application/json", "content-length": "7"}
    assert await read_json_body(declared, await receive_in([b'{"a":', b"1}"]), 100, held.append) == b'{"a":1}'
    assert held == [7]  # before a byte was read
    held.clear()
    chunked = {"content-type": "application/json"}
    assert await read_json_body(chunked, await receive_in([b'{"a":', b"1}"]), 100, held.append) == b'{"a":1}'
    assert held == [5, 2]
    admission = Admission(max_requests=1, max_body_bytes=6)
    with pytest.raises(Overloaded):
        await read_json_body(chunked, await receive_in([b'{"a":', b"1}"]), 100, admission.enter().hold)
