"""Every bad input gets its status and an OpenAI-shaped message that says what is wrong."""

from __future__ import annotations

import http.client
import re
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel, ValidationError

from service.config import hash_api_key
from service.errors import UpstreamError, UpstreamTimeout, relayed_error_body, sse_error_event
from service.strategies.sse import stream_error_status
from service.validation import ChatBody, CompletionBody
from tests.harness import GatewayServer, SimProcess, direct_config, sims, wait_until

KEY = "sk-test-123"
CHAT = {"model": "sim-a", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def locked_gateway(two_sims: list[SimProcess]) -> Iterator[GatewayServer]:
    config = direct_config({s.model: [s.url] for s in two_sims},
                           auth={"api_key_hashes": [hash_api_key(KEY)]},
                           server={"max_body_bytes": 4096, "max_tokens_limit": 1000, "max_n": 4})
    with GatewayServer(config) as server:
        yield server


def post(gateway: GatewayServer, body: Any = None, *, key: str | None = KEY, path: str = "/v1/chat/completions",
         **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(gateway.url + path, json=body, headers=headers, **{"timeout": 10, **kwargs})


def assert_error(response: httpx.Response, status: int, *, param: str | None = None, says: str = "") -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert says.lower() in error["message"].lower()
    if param is not None:
        assert error["param"] == param


def test_valid_key_passes(locked_gateway: GatewayServer) -> None:
    assert post(locked_gateway, CHAT).status_code == 200


def test_missing_key_is_401(locked_gateway: GatewayServer) -> None:
    response = post(locked_gateway, CHAT, key=None)
    assert_error(response, 401, says="missing API key")
    assert response.headers["www-authenticate"] == "Bearer"
    models = httpx.get(locked_gateway.url + "/v1/models")  # served by FastAPI, same error and header
    assert_error(models, 401, says="missing API key")
    assert models.headers["www-authenticate"] == "Bearer"


def test_wrong_key_is_401(locked_gateway: GatewayServer) -> None:
    response = post(locked_gateway, CHAT, key="sk-wrong")
    assert_error(response, 401, says="invalid API key")
    assert (response.json()["error"]["type"], response.json()["error"]["code"]) == ("invalid_request_error",
                                                                                  "invalid_api_key")  # as OpenAI


def test_requests_refused_before_a_model_takes_them_are_counted_by_path_and_status(
        locked_gateway: GatewayServer) -> None:
    def refused(path: str, status: str) -> float:
        return locked_gateway.metric("switchyard_refused_requests_total", path=path, status=status)

    before = {key: refused(*key) for key in [("/v1/chat/completions", "401"), ("/v1/chat/completions", "404"),
                                              ("/v1/route", "400"), ("/v1/completions", "405")]}
    assert post(locked_gateway, CHAT, key="sk-wrong").status_code == 401
    assert post(locked_gateway, {**CHAT, "model": "nope"}).status_code == 404
    assert post(locked_gateway, {"model": "sim-a"}, path="/v1/route").status_code == 400
    assert httpx.get(locked_gateway.url + "/v1/completions").status_code == 405
    assert {key: refused(*key) - count for key, count in before.items()} == dict.fromkeys(before, 1)


def test_public_paths_need_no_key(locked_gateway: GatewayServer) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(locked_gateway.url + path).status_code == 200, path
    assert httpx.get(locked_gateway.url + "/v1/models").status_code == 401


@pytest.mark.parametrize(("body", "param", "says"), [
    ({"messages": [{"role": "user", "content": "x"}]}, "model", "field required"),
    ({"model": "sim-a"}, "messages", "field required"),
    ({"model": "sim-a", "messages": []}, "messages", "at least 1"),
    ({**CHAT, "temperature": 3}, "temperature", "less than or equal to 2"),
    ({**CHAT, "temperature": "hot"}, "temperature", "valid number"),
    ({**CHAT, "max_tokens": -1}, "max_tokens", "greater than or equal to 0"),
    ({**CHAT, "max_tokens": 5000}, "max_tokens", "at most 1000"),
    ({**CHAT, "n": 9}, "n", "at most 4"),
    ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role", "input should be"),
    ({**CHAT, "stream": "yes"}, "stream", "valid boolean"),
    ({**CHAT, "temperature": "1.5"}, "temperature", "valid number"),
    ({**CHAT, "max_tokens": True}, "max_tokens", "valid integer"),
    ({**CHAT, "n": 2.0}, "n", "valid integer"),
    ({**CHAT, "switchyard_tradeoff": "0.5"}, "switchyard_tradeoff", "valid number"),
    ({**CHAT, "chat_template_kwargs": "x"}, "chat_template_kwargs", "valid dictionary"),
    ({**CHAT, "continue_final_message": 1}, "continue_final_message", "valid boolean"),
    ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "messages.0.content", "valid string"),
    ({**CHAT, "messages": [{"content": "x"}]}, "messages.0.role", "field required"),
    ({**CHAT, "stop": 5}, "stop", "valid string"),
])
def test_invalid_fields_are_400_naming_the_field(locked_gateway: GatewayServer, body: dict[str, Any], param: str,
                                                  says: str) -> None:
    assert_error(post(locked_gateway, body), 400, param=param, says=says)


def test_completion_needs_a_prompt(locked_gateway: GatewayServer) -> None:
    assert_error(post(locked_gateway, {"model": "sim-a"}, path="/v1/completions"), 400, param="prompt")


def test_param_names_the_element_not_pydantics_union_branch(locked_gateway: GatewayServer) -> None:
    response = post(locked_gateway, {"model": "sim-a", "prompt": [1, "a"]}, path="/v1/completions")
    assert_error(response, 400, param="prompt")
    response = post(locked_gateway, {**CHAT, "stop": ["ok", 3]})
    assert_error(response, 400, param="stop")


def nested(depth: int) -> bytes:
    return orjson.dumps(CHAT)[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(("model", "body"), [
    (CompletionBody, {"model": "m", "prompt": [True] * 10_000}),
    (CompletionBody, {"model": "m", "prompt": [[1, "a"]] * 10_000}),
    (CompletionBody, {"model": "m", "prompt": "x", "stop": [1] * 10_000}),
    (ChatBody, {"model": "m", "messages": [{"role": "x", "content": "hi"}] * 10_000}),
    (ChatBody, {"model": "m", "messages": [{"role": "user", "content": [1] * 10_000}]}),
])
def test_a_list_of_bad_items_is_refused_at_its_first(model: type[BaseModel], body: dict[str, Any]) -> None:
    """pydantic would otherwise build an error per item and union branch: seconds of CPU for a 1 MB body."""
    with pytest.raises(ValidationError) as refused:
        model.model_validate(body)
    assert refused.value.error_count() <= 8


def test_a_body_nested_deeper_than_the_gateway_can_send_on_is_400(locked_gateway: GatewayServer) -> None:
    json_headers = {"Content-Type": "application/json"}
    assert post(locked_gateway, content=nested(200), headers=json_headers).status_code == 200
    response = post(locked_gateway, content=nested(300), headers=json_headers)
    assert_error(response, 400, says="nested more than 254 levels")


def test_a_malformed_http_request_is_400_openai_shaped(locked_gateway: GatewayServer) -> None:
    with socket.create_connection(("127.0.0.1", locked_gateway.port), timeout=10) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: application/json" in head
    assert re.search(rb"\r\nx-request-id: req_[0-9a-f]{24}\r\n", head)  # none was sent: a new one
    assert orjson.loads(body)["error"]["code"] == "invalid_http_request"


def test_invalid_json_is_400(locked_gateway: GatewayServer) -> None:
    response = post(locked_gateway, content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 400, says="not valid JSON")


def test_non_object_json_is_400(locked_gateway: GatewayServer) -> None:
    assert_error(post(locked_gateway, [1, 2]), 400, says="JSON object")


def test_unknown_model_is_404(locked_gateway: GatewayServer) -> None:
    response = post(locked_gateway, {**CHAT, "model": "gpt-17"})
    assert_error(response, 404, param="model", says="does not exist")
    assert (response.json()["error"]["type"], response.json()["error"]["code"]) == ("invalid_request_error",
                                                                                  "model_not_found")  # as OpenAI


def test_a_trade_off_suffix_on_a_model_without_one_is_404(locked_gateway: GatewayServer) -> None:
    for model in ("sim-a:0.3", "sim-a:lots"):
        assert_error(post(locked_gateway, {**CHAT, "model": model}), 404, param="model",
                     says="'sim-a' takes no trade-off suffix")


def test_body_too_large_is_413(locked_gateway: GatewayServer) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert_error(post(locked_gateway, big), 413, says="larger than 4096")


def test_a_body_that_stops_arriving_is_408() -> None:
    """A client that sends its head and part of its body, then nothing, is answered and let go."""
    with sims("x") as (sim,), GatewayServer(direct_config({"x": [sim.url]}, server={"body_timeout_s": 0.5})) as gw:
        connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", "100")
        connection.putheader("X-Request-Id", "mine-123")
        connection.endheaders(b'{"model": "x", ')  # 15 of the 100 bytes announced
        response = connection.getresponse()
        assert response.status == 408 and response.getheader("x-request-id") == "mine-123"
        assert orjson.loads(response.read())["error"] == {
            "message": "request body not received within 0.5 s", "type": "invalid_request_error", "param": None,
            "code": "request_timeout"}
        connection.close()
        assert sim.last_request()["body"] == {}, "nothing reached the backend"


def test_a_body_that_stops_arriving_after_an_early_answer_only_closes_the_connection() -> None:
    with sims("x") as (sim,), GatewayServer(direct_config({"x": [sim.url]}, server={"body_timeout_s": 0.5})) as gw:
        connection = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        connection.putrequest("POST", "/v1/chat/completions")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", "2000000")  # over max_body_bytes: answered before the body
        connection.endheaders(b'{"model": "x", ')
        response = connection.getresponse()
        assert response.status == 413
        response.read()
        assert connection.sock.recv(64) == b"", "closed once the body is overdue, with no second answer"
        connection.close()


def test_wrong_content_type_is_415(locked_gateway: GatewayServer) -> None:
    response = post(locked_gateway, content=b"model=sim-a", headers={"Content-Type": "text/plain"})
    assert_error(response, 415, says="application/json")


def test_unknown_path_is_404_openai_shaped() -> None:
    with sims("x") as (sim,), GatewayServer(direct_config({"x": [sim.url]})) as gateway:
        assert_error(httpx.get(gateway.url + "/v1/nothing"), 404)
        wrong_method = httpx.get(gateway.url + "/v1/chat/completions")
        assert_error(wrong_method, 405)
        assert wrong_method.headers["allow"] == "POST"


def test_backend_client_error_is_relayed_with_its_message() -> None:
    """A 4xx from vLLM about the request is the client's problem: relayed with vLLM's own message, not retried."""
    with sims("x", max_model_len=100) as (sim,), GatewayServer(direct_config({"x": [sim.url]})) as gateway:
        for stream in (False, True):
            response = post(gateway, {**CHAT, "model": "x", "stream": stream, "max_tokens": 101}, key=None)
            assert_error(response, 400, param="max_tokens", says="maximum context length")
            assert response.json()["error"]["type"] == "invalid_request_error"
        assert gateway.metric("switchyard_retries_total", backend="x") == 0


def test_a_backend_refusing_the_gateway_is_502_not_the_clients_error() -> None:
    """vLLM's 404 for a model name it does not serve (or a 401 for the gateway's key) is a gateway misconfiguration:
    a 502 that names the backend and keeps vLLM's message, not a 404 the client would read as its own mistake."""
    with sims("x") as (sim,):
        config = direct_config({"x": [sim.url]})
        config["backends"][0]["model"] = "renamed"  # the replica does not serve this name: it answers 404
        with GatewayServer(config) as gateway:
            for stream in (False, True):
                response = post(gateway, {**CHAT, "model": "x", "stream": stream}, key=None)
                assert_error(response, 502, says="`renamed` does not exist")
                assert response.json()["error"]["type"] == "upstream_error"
            assert gateway.metric("switchyard_retries_total", backend="x") == 0
            assert gateway.metric("switchyard_upstream_errors_total", backend="x", kind="status") == 2


@pytest.mark.parametrize(("raw", "expected"), [
    (b'{"error": {"message": "max_tokens is too large", "type": "BadRequestError", "param": "max_tokens", '
     b'"code": 400}}', {"message": "max_tokens is too large", "param": "max_tokens", "code": "400"}),
    (b'{"object": "error", "message": "bad prompt", "type": "BadRequestError", "param": null, "code": 400}',
     {"message": "bad prompt", "param": None, "code": "400"}),
    (b'{"detail": "Not Found"}', {"message": "Not Found", "param": None, "code": None}),
    (b"<html>proxy error</html>", {"message": "<html>proxy error</html>", "param": None, "code": None}),
    (b"", {"message": "the backend answered 400", "param": None, "code": None}),
    (b'{"error": "bad request"}', {"message": "bad request", "param": None, "code": None}),
    # shapes no server sends, nested deeper than str() can recurse: nothing of them is quoted
    (b'{"error": {"message": "m", "code": ' + b"[" * 1000 + b"]" * 1000 + b"}}",
     {"message": "m", "param": None, "code": None}),
    (b"[" * 1000 + b"]" * 1000, {"message": "the backend answered 400", "param": None, "code": None}),
    # only the start of a large body was read: JSON cut short is not quoted, other text only in part
    (b'{"error": {"message": "' + b"x" * 100, {"message": "the backend answered 400", "param": None, "code": None}),
    (b"<html>" + b"x" * 5000, {"message": "<html>" + "x" * 994, "param": None, "code": None}),
])
def test_backend_error_bodies_are_reshaped_for_openai_clients(raw: bytes, expected: dict[str, Any]) -> None:
    assert orjson.loads(relayed_error_body(400, raw)) == {"error": {**expected, "type": "invalid_request_error"}}


def test_every_replica_failing_is_502() -> None:
    with sims("x", fault="error") as (sim,), GatewayServer(direct_config({"x": [sim.url]})) as gateway:
        response = post(gateway, {**CHAT, "model": "x"}, key=None)
        assert_error(response, 502, says="answered 500: injected fault")  # the message, not a bytes literal


def test_no_healthy_replica_is_503() -> None:
    with sims("x") as (sim,):
        config = direct_config({"x": [sim.url]})
        sim.kill()
        with GatewayServer(config) as gateway:
            response = post(gateway, {**CHAT, "model": "x"}, key=None)
            assert_error(response, 503, says="no healthy replica")
            assert response.headers["retry-after"] == "1"  # the next health check, 0.2 s away, may readmit it
            assert httpx.get(gateway.url + "/ready").status_code == 503


def test_ready_while_some_model_can_serve_and_says_which() -> None:
    with sims("x", "y") as (up, down):
        config = direct_config({"x": [up.url], "y": [down.url]})
        down.kill()
        with GatewayServer(config) as gateway:
            ready = httpx.get(gateway.url + "/ready")
            assert (ready.status_code, ready.json()) == (200, {"ready": True, "models": {"x": True, "y": False}})
            assert_error(post(gateway, {**CHAT, "model": "y"}, key=None), 503, says="no healthy replica")


def test_hung_replica_is_504() -> None:
    with sims("x", fault="hang") as (sim,):
        config = direct_config({"x": [sim.url]}, dispatch={"retries": 0})
        config["backends"][0]["timeouts"] = {"connect_s": 1, "first_byte_s": 0.5, "total_s": 0.5}
        with GatewayServer(config) as gateway:
            assert_error(post(gateway, {**CHAT, "model": "x"}, key=None), 504, says="timed out")


def test_saturated_replicas_are_429() -> None:
    with sims("x", max_concurrency=1, tokens_per_s=10) as (sim,):
        config = direct_config({"x": [sim.url]}, dispatch={"saturation_queue": 2})
        with GatewayServer(config) as gateway, ThreadPoolExecutor(3) as pool:
            slow = {**CHAT, "model": "x", "max_tokens": 50}  # 5 s each: the queue stays long while the test looks
            busy = [pool.submit(post, gateway, slow, key=None, timeout=30) for _ in range(3)]
            wait_until(lambda: gateway.metric("switchyard_replica_waiting", backend="x") >= 2, what="queue scraped")
            response = post(gateway, {**CHAT, "model": "x"}, key=None)
            assert_error(response, 429, says="saturated")
            assert response.headers["retry-after"] == "1"
            assert [f.result().status_code for f in busy] == [200, 200, 200]


@pytest.mark.parametrize(("events", "status"), [
    (sse_error_event(UpstreamError("broke off")), 502),
    (sse_error_event(UpstreamTimeout("too slow")), 504),
    (b'data: {"error": {"message": "out of memory", "type": "InternalServerError", "code": 500}}\n\n', 500),
    (b'data: {"error": {"message": "odd", "type": "SomethingElse"}}\n\n', 502),
    (b'data: {"object": "error", "message": "bad", "type": "invalid_request_error", "code": 400}\n\n', 400),
    (b'data: {"choices": [{"delta": {"content": "\\"error\\": {\\"type\\": 1}"}}]}\n\n', None),  # text
    (b'data: {"choices": [{"delta": {"content": "the"}}]}\n\ndata: [DONE]\n\n', None),
    (b'data: ["error"]\n\n', None),
])
def test_an_error_event_counts_as_its_failure(events: bytes, status: int | None) -> None:
    assert stream_error_status(events) == status
