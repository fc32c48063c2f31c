"""What a streamed answer holds upstream (its connection, its replica slot) is freed however the request ends:
a client gone before the relay started, a strategy failing after the relay, a client that stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from prometheus_client import generate_latest

import service.api.replies
from service.app import create_app
from service.config import parse_settings
from service.gateway import Gateway
from service.http_protocol import CONNECTION_LOST, GuardedHttpToolsProtocol
from service.types import GatewayRequest, Reply
from tests.harness import (
    Canned,
    CannedBackend,
    GatewayServer,
    SimProcess,
    direct_config,
    metric_value,
    sims,
    wait_until,
)

STREAM = orjson.dumps({"model": "m", "stream": True, "max_tokens": 50,
                       "messages": [{"role": "user", "content": "hi"}]})


@pytest.fixture(scope="module")
def sim() -> Iterator[SimProcess]:
    with sims("m", tokens_per_s=50) as (process,):
        yield process


async def call(app: Any, lost: asyncio.Future[None]) -> list[str]:
    """One streamed chat request through the app, on a connection whose loss is `lost`; the messages sent."""
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"content-type", b"application/json")], "extensions": {CONNECTION_LOST: lost}}
    messages = [{"type": "http.request", "body": STREAM, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])

    await app(scope, receive, send)
    return sent


def in_process(sim: SimProcess, patch: Any) -> tuple[list[str], int, float]:
    """Run one request after `patch(strategy, lost)` changed the `m` strategy; what was sent, the replica's
    in-flight count and the gateway's in-flight gauge after it."""
    async def main() -> tuple[list[str], int, float]:
        app = create_app(parse_settings(direct_config({"m": [sim.url]})))
        gateway: Gateway = app.gateway  # type: ignore[attr-defined]
        await gateway.start()
        try:
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            patch(gateway.strategies["m"], lost)
            sent = await call(app, lost)
            exposition = generate_latest(gateway.metrics.registry).decode()
            gauge = metric_value(exposition, "switchyard_in_flight_requests", model="m")
            return sent, gateway.pool.replicas("m")[0].in_flight, gauge
        finally:
            await gateway.close()

    return asyncio.run(main())


def test_a_client_gone_as_the_stream_arrives_frees_its_replica(sim: SimProcess) -> None:
    def patch(strategy: Any, lost: asyncio.Future[None]) -> None:
        respond = strategy.respond

        async def respond_then_leave(request: GatewayRequest, dispatcher: Any) -> Reply:
            reply = await respond(request, dispatcher)
            lost.set_result(None)  # the client leaves just as the upstream head arrived: nothing is relayed
            return reply

        strategy.respond = respond_then_leave

    sent, in_flight, gauge = in_process(sim, patch)
    assert "http.response.start" not in sent
    assert (in_flight, gauge) == (0, 0.0)


def test_a_strategy_failing_after_the_relay_frees_the_stream_and_the_request_gauge(sim: SimProcess) -> None:
    def patch(strategy: Any, lost: asyncio.Future[None]) -> None:
        async def follow_up(*args: Any) -> Reply:
            raise ValueError("a bug after the relay")

        strategy.follow_up = follow_up

    sent, in_flight, gauge = in_process(sim, patch)
    assert sent == ["http.response.start", "http.response.body"]  # a 500
    assert (in_flight, gauge) == (0, 0.0)


def test_a_client_that_stops_reading_loses_its_stream_after_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service.api.replies, "WRITE_GRACE_S", 0.2)
    with sims("m") as (fast,):  # every token at once: far more than the socket buffers hold
        config = direct_config({"m": [fast.url]})
        # Time enough for the simulator to send more than the sockets hold, even on a loaded machine: a stream
        # that ends first (its own timeout) leaves no write to stall.
        config["backends"][0]["timeouts"] = {"connect_s": 1, "first_byte_s": 4, "total_s": 4}
        with GatewayServer(config) as gateway, socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", gateway.port))
            body = orjson.dumps({"model": "m", "stream": True, "max_tokens": 32768,
                                 "messages": [{"role": "user", "content": "hi"}]})
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json"
                           b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert client.recv(16).startswith(b"HTTP/1.1 200")  # the stream started; now nothing more is read
            replica = gateway.gateway.pool.replicas("m")[0]
            wait_until(lambda: replica.in_flight == 0, timeout=10, what="the stream given up")
            assert gateway.metric("switchyard_requests_total", model="m", status="408") == 1
            # and its connection with it: the client still holds its end and reads nothing
            wait_until(lambda: not gateway.server.server_state.connections, timeout=10, what="connection dropped")


def test_a_client_that_reads_nothing_of_a_whole_answer_loses_its_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer handed to the transport in whole is done for the handler; the bytes the client leaves unread
    would otherwise stay in the gateway's memory for as long as it keeps the connection open."""
    monkeypatch.setattr(GuardedHttpToolsProtocol, "unsent_timeout_s", 0.3)
    backend = CannedBackend()
    backend.canned = Canned(body=b'{"text": "%s"}' % (b"x" * (16 << 20)))  # far more than the sockets hold
    try:
        with GatewayServer(direct_config({"m": [backend.url]})) as gateway, socket.socket() as client:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", gateway.port))
            body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json"
                           b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert client.recv(16).startswith(b"HTTP/1.1 200")  # the answer started; now nothing more is read
            connections = gateway.server.server_state.connections
            wait_until(lambda: not connections, timeout=10, what="the connection aborted")
            received = 16
            with contextlib.suppress(ConnectionResetError):
                while chunk := client.recv(1 << 20):
                    received += len(chunk)
            assert received < 16 << 20  # the rest was dropped, not sent
    finally:
        backend.close()


def test_the_unsent_watch_counts_bytes_read_across_answers_as_progress() -> None:
    """On a keep-alive connection the buffer may hold the next answer by the time the watch looks: what counts
    is whether bytes left it, not whether it shrank."""
    class Transport:
        def __init__(self) -> None:
            self.buffered, self.aborted = 0, False

        def get_write_buffer_size(self) -> int:
            return self.buffered

        def abort(self) -> None:
            self.aborted = True

    class Coalescing:
        sent_bytes = 0

        def sent(self) -> int:
            return self.sent_bytes

    timers: list[tuple[float, Any]] = []
    watch = SimpleNamespace(transport=Transport(), _coalescing=Coalescing(), unsent_timeout_s=30.0, cycle=None,
                            loop=SimpleNamespace(call_later=lambda delay, fn, *args: timers.append((delay, args))))
    watch._abort = functools.partial(GuardedHttpToolsProtocol._abort, watch)
    watch._watch_unsent = functools.partial(GuardedHttpToolsProtocol._watch_unsent, watch)
    watch._check_unsent = check = functools.partial(GuardedHttpToolsProtocol._check_unsent, watch)
    watch.transport.buffered = 5_000_000  # a first answer, mostly unsent
    watch._watch_unsent(0)
    watch._coalescing.sent_bytes = 9_000_000  # the client read it and half of the next, larger one
    watch.transport.buffered = 8_000_000
    check(timers[-1][1][0])
    assert not watch.transport.aborted and timers[-1] == (30.0, (9_000_000,))
    check(timers[-1][1][0])  # then nothing for 30 s
    assert watch.transport.aborted
