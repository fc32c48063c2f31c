"""A gateway replica that stops (rollout, scale-down, drain) ends the requests still open just before its
grace period runs out: a stream with an error event and `[DONE]`, a request waiting for its backend with a
503 to retry elsewhere. Neither client sees a cut connection."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson

from service.commands.serve import stop_cutoff
from tests.harness import GatewayServer, direct_config, sims, wait_until

SLOW_ANSWER = {"model": "x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 200}  # 40 s


def test_requests_open_at_shutdown_end_with_an_error_not_a_cut_connection() -> None:
    with sims("x", tokens_per_s=5, max_tokens=200) as (sim,):
        config = direct_config({"x": [sim.url]}, server={"shutdown_timeout_s": 2})
        gateway = GatewayServer(config)
        with gateway, ThreadPoolExecutor(1) as pool, httpx.Client(timeout=30) as client, \
                client.stream("POST", gateway.url + "/v1/chat/completions",
                              json={**SLOW_ANSWER, "stream": True}) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line.startswith("data: ")) != "data: [DONE]"  # under way
            buffered = pool.submit(client.post, gateway.url + "/v1/chat/completions", json=SLOW_ANSWER)
            wait_until(lambda: gateway.metric("switchyard_in_flight_requests") == 2, what="both requests open")
            gateway.server.should_exit = True
            events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
            answer = buffered.result()
        assert events[-1] == "[DONE]"
        assert orjson.loads(events[-2])["error"]["code"] == "server_shutting_down"
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.json()["error"]["code"] == "server_shutting_down"


def test_the_cutoff_comes_a_second_before_uvicorn_cancels() -> None:
    assert stop_cutoff(50) == 49
    assert stop_cutoff(1) == 0.5
