"""Failover, hung replicas, broken streams and client disconnects, against simulator processes."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from service.config import parse_settings
from service.dispatch import token_budget
from service.errors import BackendRejected, UpstreamError
from service.gateway import Gateway
from tests.harness import GatewayServer, SimProcess, direct_config, sims, wait_until

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
# One client for every test and thread: a client built per request loads its CA bundle holding the interpreter
# lock, which a gateway in this process would count as its own overhead.
CLIENT = httpx.Client(timeout=20)


def chat(gateway: GatewayServer, **overrides: object) -> httpx.Response:
    return CLIENT.post(gateway.url + "/v1/chat/completions", json={**CHAT, **overrides})


def timed_config(urls: list[str], total_s: float, first_byte_s: float = 20, **dispatch: object) -> dict[str, Any]:
    """The gateway config of backend "m" on `urls`, with a 2 s connect timeout and these others."""
    config = direct_config({"m": urls}, dispatch=dispatch)
    config["backends"][0]["timeouts"] = {"connect_s": 2, "first_byte_s": first_byte_s, "total_s": total_s}
    return config


def occupy(pool: ThreadPoolExecutor, engines: list[SimProcess], max_tokens: int) -> None:
    """Keep each of `engines` (one request per entry) busy generating `max_tokens`, sent to it directly. The
    simulators are to stop before `pool` closes: that ends these requests, so the pool does not wait for them."""
    for sim in engines:
        pool.submit(CLIENT.post, sim.url + "/v1/chat/completions", json={**CHAT, "max_tokens": max_tokens})


def test_requests_spread_over_replicas_by_load() -> None:
    with sims("m", "m", tokens_per_s=50) as (a, b), GatewayServer(direct_config({"m": [a.url, b.url]})) as gw:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: chat(gw, max_tokens=10), range(16)))
        assert all(r.status_code == 200 for r in results)
        assert [r.in_flight for r in gw.gateway.pool.replicas("m")] == [0, 0]  # every count returned to zero
        assert a.last_request()["body"] and b.last_request()["body"], "both replicas took traffic"


def test_killing_a_replica_under_load_loses_no_unstarted_request() -> None:
    with sims("m", "m", tokens_per_s=200) as (a, b), GatewayServer(direct_config({"m": [a.url, b.url]})) as gw:
        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(chat, gw, max_tokens=20) for _ in range(120)]
            wait_until(lambda: sum(f.done() for f in futures) >= 20, what="traffic flowing")
            a.kill()
            statuses = [f.result().status_code for f in futures]
        # Non-streaming requests have sent nothing before completion, so each one must be retried elsewhere.
        assert statuses.count(200) == 120, statuses
        wait_until(lambda: gw.metric("switchyard_replica_healthy", replica=a.url) == 0,
                   what="killed replica marked unhealthy")


def test_a_hung_replica_does_not_stall_the_other() -> None:
    with sims("m", "m") as (hung, ok):
        hung.set_fault("hang")
        config = timed_config([hung.url, ok.url], total_s=2, first_byte_s=2, retries=1)
        with GatewayServer(config) as gw:
            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(lambda _: chat(gw), range(24)))
            # Requests that hit the hung replica time out after 2 s and are retried on the healthy one.
            assert [r.status_code for r in results] == [200] * 24
            assert gw.metric("switchyard_upstream_errors_total", replica=hung.url, kind="timeout") >= 1
            # The seconds it waited on the hung replica are backend time, not the gateway's own overhead (the
            # histogram's top bucket, a quarter of a second, tells the two apart).
            assert gw.metric("switchyard_overhead_seconds_bucket", model="m", le="0.25") == 24


def test_a_buffered_answer_past_total_s_on_a_working_replica_is_a_504_not_retried_nor_held_against_it() -> None:
    """A replica whose engine was seen generating meanwhile is slow for this request's length, not hung: another
    would take as long, and ejecting it would leave the backend without replicas."""
    with sims("m", "m", tokens_per_s=20) as (a, b):
        config = timed_config([a.url, b.url], total_s=2, breaker_failures=2, retries=1)  # 20 scrapes
        with GatewayServer(config) as gw:
            for _ in range(3):
                response = chat(gw, max_tokens=200)  # 10 s of tokens
                assert response.status_code == 504 and "2 s limit" in response.json()["error"]["message"]
                assert response.headers["x-should-retry"] == "false"
            assert gw.metric("switchyard_retries_total", backend="m") == 0
            assert gw.metric("switchyard_upstream_errors_total", backend="m", kind="timeout") == 3
            assert all(r.available() and r.consecutive_failures == 0 for r in gw.gateway.pool.replicas("m"))
            assert chat(gw).status_code == 200


def test_a_buffered_request_waiting_its_turn_past_total_s_is_retried_not_called_too_long() -> None:
    """Engines that generate for others while the request waits in their queues: the counter rises, but the
    answer is not the one being generated, so the timeout stays the replica's failure, and is retried."""
    with ThreadPoolExecutor(2) as pool, sims("m", "m", tokens_per_s=20, max_concurrency=1) as (a, b):
        occupy(pool, [a, b], max_tokens=200)  # 10 s each: both are busy
        with GatewayServer(timed_config([a.url, b.url], total_s=1.5, retries=1)) as gw:
            wait_until(lambda: a.last_request()["running"] == b.last_request()["running"] == 1, what="both busy")
            response = chat(gw, max_tokens=200)  # long enough to be called too long, but for the queue
            assert response.status_code == 504 and "x-should-retry" not in response.headers
            assert gw.metric("switchyard_retries_total", backend="m") == 1


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", CHAT),  # 4 tokens
    ("/v1/completions", {"model": "m", "prompt": "hi"}),  # vLLM's default of 16 tokens
], ids=["chat", "completion-default-budget"])
def test_a_short_buffered_answer_stuck_on_a_replica_generating_for_others_is_retried(
        path: str, body: dict[str, object]) -> None:
    """The engine's counter rises for the other requests, but this answer's tokens at its time per token take a
    fraction of `total_s`: unfinished at the limit, it is stuck, so it is the replica's failure and goes
    elsewhere."""
    with ThreadPoolExecutor(3) as pool, sims("m", "m", tokens_per_s=100) as (stuck, ok):
        occupy(pool, [stuck, ok, ok], max_tokens=1000)  # 10 s each
        with GatewayServer(timed_config([stuck.url, ok.url], total_s=1.5, retries=1)) as gw:
            replicas = gw.gateway.pool.replicas("m")
            wait_until(lambda: [r.load.running for r in replicas] == [1, 2], what="one busy, the other busier")
            stuck.set_fault("hang")  # what it is generating goes on; what it is sent now never starts
            response = CLIENT.post(gw.url + path, json=body)  # to the less busy replica first
            assert response.status_code == 200, response.text
            assert gw.metric("switchyard_retries_total", backend="m") == 1
            assert replicas[0].consecutive_failures == 1


def test_a_buffered_answer_on_a_replica_that_froze_after_it_was_sent_is_retried() -> None:
    """The scrapes saw the engine generate after the request was sent, and then saw nothing more: it froze (its
    `/metrics` with it), so the timeout is the replica's failure, and the request goes elsewhere."""
    with ThreadPoolExecutor(2) as pool, sims("m", "m", tokens_per_s=20) as (frozen, ok):
        occupy(pool, [ok], max_tokens=400)
        # past the freshness window (twice the longest gap between scrapes, 3.2 s here) after the freeze
        with GatewayServer(timed_config([frozen.url, ok.url], total_s=6, retries=1)) as gw:
            replicas = gw.gateway.pool.replicas("m")
            wait_until(lambda: [r.load.running for r in replicas] == [0, 1], what="the other replica busy")
            sent = time.monotonic()
            answer = pool.submit(chat, gw, max_tokens=40)  # 2 s of tokens (could run long), to the idle replica
            wait_until(lambda: replicas[0].generating_from > sent, what="a scrape seeing it generate")
            frozen.freeze()
            response = answer.result()
            assert response.status_code == 200, response.text
            assert gw.metric("switchyard_retries_total", backend="m") == 1
            assert replicas[0].consecutive_failures == 1


def test_the_token_budget_is_vllms() -> None:
    assert token_budget("/v1/chat/completions", {"max_completion_tokens": 7, "max_tokens": 9}) == 7
    assert token_budget("/v1/chat/completions", {"max_tokens": 9}) == 9
    assert token_budget("/v1/chat/completions", {}) is None  # up to the context
    assert token_budget("/v1/completions", {"max_completion_tokens": 7, "max_tokens": 9}) == 9
    assert token_budget("/v1/completions", {}) == 16
    assert token_budget("/v1/completions", {"max_tokens": None}) == 16  # vLLM reads null as unset


def test_failing_replica_is_ejected_and_readmitted_after_health_checks(caplog: pytest.LogCaptureFixture) -> None:
    with sims("m", "m") as (bad, good):
        config = direct_config({"m": [bad.url, good.url]}, dispatch={"breaker_failures": 2, "retries": 1,
                                                                      "breaker_cooldown_s": 0.5})
        with GatewayServer(config) as gw:
            bad.set_fault("error")

            def bad_failures() -> float:
                return gw.metric("switchyard_upstream_errors_total", replica=bad.url, kind="status")

            # Ties between idle replicas are broken at random: go on until the bad one has failed twice
            # (fewer than two picks in 100 requests has odds of about 1e-28).
            for _ in range(100):
                assert chat(gw).status_code == 200  # retried on the good replica
                if bad_failures() >= 2:
                    break
            assert bad_failures() == 2
            assert gw.gateway.pool.replicas("m")[0].ejected_until > 0, "the breaker ejected the bad replica"
            assert [r.getMessage() for r in caplog.records if "ejected" in r.getMessage()] == [
                f"replica {bad.url} of m ejected for 0.5 s after 2 failed requests in a row (the last: backend 'm' "
                "answered 500: injected fault)"]
            bad.set_fault("none")
            wait_until(lambda: gw.metric("switchyard_replica_healthy", replica=bad.url) == 1,
                       what="replica readmitted after cool-down")


def test_a_replica_whose_streams_break_off_is_ejected() -> None:
    """A stream counts as a success when it is whole, not when its head arrives: one that breaks off every
    time adds up to an ejection, though every stream's head came back fine."""
    with sims("m", "m") as (bad, good):
        bad.set_fault("drop_stream")
        config = direct_config({"m": [bad.url, good.url]}, dispatch={"breaker_failures": 3, "breaker_cooldown_s": 60})
        with GatewayServer(config) as gw:
            broken = 0
            for _ in range(200):  # ties go either way at random: until the bad replica broke off three times
                events = stream_events(gw)
                broken += "error" in events[-2]
                if broken == 3:
                    break
            assert broken == 3
            assert not gw.gateway.pool.replicas("m")[0].available(), "the breaker ejected it"
            assert all("error" not in stream_events(gw)[-2] for _ in range(5))


def test_a_replica_that_refuses_the_gateway_is_passed_over() -> None:
    """One replica serving another model name (a rollout gone wrong) answers 404: the request goes to a replica
    that serves it, and the refusing one is counted against."""
    with sims("other", "m") as (wrong, right):
        with GatewayServer(direct_config({"m": [wrong.url, right.url]})) as gw:
            assert all(chat(gw).status_code == 200 for _ in range(20))
            refused = gw.metric("switchyard_upstream_errors_total", replica=wrong.url, kind="status")
            assert refused >= 1 and gw.metric("switchyard_retries_total", backend="m") == refused


def stream_events(gateway: GatewayServer, **overrides: object) -> list[str]:
    """The data of every event of a streamed chat answer."""
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=20,
                      json={**CHAT, "stream": True, **overrides}) as response:
        assert response.status_code == 200
        return [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize("fault", ["drop_stream", "cut_event"])
def test_a_stream_dropped_half_way_ends_with_an_error_event_and_done(fault: str) -> None:
    with sims("m", fault=fault) as (sim,), GatewayServer(direct_config({"m": [sim.url]})) as gw:
        events = stream_events(gw, max_tokens=10)
        assert events[-1] == "[DONE]"
        chunks = [orjson.loads(event) for event in events[:-1]]  # every event whole, the cut one dropped
        error = chunks[-1]["error"]
        assert error["type"] == "upstream_error" and "stream" in error["message"]
        assert [c["choices"][0]["delta"]["content"].strip() for c in chunks[:-1]] == \
            ["the", "quick", "model", "answers", "with"]  # the answer was cut short, and said so
        # Counted as the failure it was, not as the 200 its head said.
        wait_until(lambda: gw.metric("switchyard_requests_total", model="m", status="502") == 1, what="a 502")
        assert gw.metric("switchyard_requests_total", model="m", status="200") == 0


def test_a_stream_is_cut_at_the_whole_request_limit() -> None:
    with sims("m", tokens_per_s=20) as (sim,):
        config = direct_config({"m": [sim.url]})
        config["backends"][0]["timeouts"] = {"connect_s": 1, "first_byte_s": 5, "total_s": 1}
        with GatewayServer(config) as gw:
            events = stream_events(gw, max_tokens=400)  # 20 s of tokens, each well within first_byte_s
            assert events[-1] == "[DONE]"
            error = orjson.loads(events[-2])["error"]
            assert error["type"] == "timeout_error" and "1 s limit" in error["message"]
            assert len(events) - 2 < 400
            assert gw.metric("switchyard_upstream_errors_total", replica=sim.url, kind="timeout") == 1
            assert gw.gateway.pool.replicas("m")[0].in_flight == 0
            wait_until(lambda: gw.metric("switchyard_requests_total", model="m", status="504") == 1, what="a 504")


async def test_client_disconnect_cancels_the_upstream_request() -> None:
    with sims("m", tokens_per_s=2) as (sim,), GatewayServer(direct_config({"m": [sim.url]})) as gw:
        # A body past 64 KiB leaves uvicorn's reading paused: the gateway must read on to see the client go.
        for stream, words in ((False, 1), (True, 1), (False, 300_000), (True, 300_000)):
            before = sim.last_request()["cancelled"]
            body = {"model": "m", "messages": [{"role": "user", "content": "hi " * words}], "max_tokens": 40,
                    "stream": stream}
            async with httpx.AsyncClient() as client:
                request = asyncio.ensure_future(client.post(gw.url + "/v1/chat/completions", timeout=30, json=body))
                await asyncio.to_thread(wait_until, lambda: sim.last_request()["running"] == 1, what="upstream busy")
                request.cancel()
            await asyncio.to_thread(wait_until, lambda b=before: sim.last_request()["cancelled"] == b + 1,
                                    what=f"upstream cancelled (stream={stream}, {len(orjson.dumps(body))} bytes)")
            assert sim.last_request()["running"] == 0


def test_a_stream_under_way_at_shutdown_gets_shutdown_timeout_s_to_finish() -> None:
    """Within the grace period it finishes as usual; past it, see test_shutdown.py."""
    with sims("m", tokens_per_s=10) as (sim,):
        config = direct_config({"m": [sim.url]}, server={"shutdown_timeout_s": 30})
        with GatewayServer(config) as gw:
            events: list[str] = []
            with httpx.stream("POST", gw.url + "/v1/chat/completions", timeout=20,
                              json={**CHAT, "stream": True, "max_tokens": 30}) as response:  # 3 s of tokens
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        events.append(line.removeprefix("data: "))
                        gw.server.should_exit = True  # as on SIGTERM: stop accepting, drain what runs
            assert len(events) == 31 and events[-1] == "[DONE]"  # 30 tokens and [DONE]


async def test_tokenizing_does_not_end_a_failing_engines_streak() -> None:
    """vLLM's API server answers /tokenize even while its engine fails every completion: fusion's tokenizer
    calls between failed completions must not keep the breaker from ejecting the replica."""
    with sims("m", fault="error") as (sim,):
        config = direct_config({"m": [sim.url]}, dispatch={"breaker_failures": 2, "breaker_cooldown_s": 60,
                                                           "retries": 0})
        gateway = Gateway(parse_settings(config))
        await gateway.start()
        try:
            with pytest.raises(UpstreamError):
                await gateway.dispatcher.post_json("m", "/v1/completions", {"prompt": "hi"})
            assert (await gateway.dispatcher.post_json("m", "/tokenize", {"prompt": "hi"}))["count"] == 1
            with pytest.raises(UpstreamError):
                await gateway.dispatcher.post_json("m", "/v1/completions", {"prompt": "hi"})
            assert not gateway.pool.replicas("m")[0].available(), "the breaker ejected it"
        finally:
            await gateway.close()


async def test_post_json_raises_a_backends_client_error_with_its_status() -> None:
    with sims("m", max_model_len=10) as (sim,):
        gateway = Gateway(parse_settings(direct_config({"m": [sim.url]})))
        await gateway.start()
        try:
            with pytest.raises(BackendRejected) as caught:
                await gateway.dispatcher.post_json("m", "/v1/completions", {"prompt": "hi", "max_tokens": 11})
            assert (caught.value.status, caught.value.param, caught.value.type) == (400, "max_tokens",
                                                                                    "invalid_request_error")
            assert "maximum context length is 10" in caught.value.message
        finally:
            await gateway.close()
