"""Sending a strategy's `Reply` over ASGI, with request metrics and disconnect handling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Iterable, Mapping
from typing import TypeVar

import orjson
from starlette.types import Receive, Scope, Send

from service.errors import GatewayError, ServerStopping, sse_error_event, stream_error_status
from service.http_protocol import CONNECTION_LOST, SERVER_STOPPING
from service.metrics import Metrics
from service.types import Reply

T = TypeVar("T")

# Status nginx uses for "client closed request": recorded, never sent.
CLIENT_CLOSED = 499
# Recorded for a stream cut because the client stopped reading it (never sent either).
CLIENT_TOO_SLOW = 408
# How long past a stream's deadline a client that stopped reading keeps its connection: the stream's own
# timeout (an error event, then [DONE]) comes first.
WRITE_GRACE_S = 5.0
_STREAM_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no"))


class ClientDisconnected(Exception):
    """The client went away before the reply was done; the upstream work was cancelled."""


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(scope: Scope, receive: Receive, work: Awaitable[T]) -> T:
    """Await `work` in this task, cancelling it (and so its upstream request) if the client disconnects
    (`ClientDisconnected`) or the server reaches its shutdown cutoff (`ServerStopping`).

    "Gone" is the server's connection-lost future (`CONNECTION_LOST` in the scope's extensions) where
    there is one; otherwise a watcher task that waits on `receive()`. The cutoff is `SERVER_STOPPING`'s.
    """
    task = asyncio.current_task()
    assert task is not None
    extensions = scope.get("extensions") or {}
    lost: asyncio.Future[None] | None = extensions.get(CONNECTION_LOST)
    stopping: asyncio.Future[None] | None = extensions.get(SERVER_STOPPING)
    gone = lost if lost is not None else asyncio.ensure_future(_wait_for_disconnect(receive))
    ends = (gone,) if stopping is None else (gone, stopping)
    if any(end.done() for end in ends):
        close = getattr(work, "close", None)  # a coroutine never started
        if close is not None:
            close()
        _raise_ended(gone)

    waiting = True

    def cancel(_: object) -> None:
        nonlocal waiting
        if waiting:  # a callback already scheduled when `work` ended must not cancel what the task does next
            waiting = False  # once: the client gone and the cutoff in one loop turn cancel it once, not twice
            task.cancel()

    for end in ends:
        end.add_done_callback(cancel)
    try:
        return await work
    except asyncio.CancelledError:
        if any(end.done() for end in ends):
            task.uncancel()
            _raise_ended(gone)
        raise
    finally:
        waiting = False
        for end in ends:
            end.remove_done_callback(cancel)
        if gone is not lost:
            gone.cancel()


def _raise_ended(gone: asyncio.Future[None]) -> None:
    if gone.done():
        raise ClientDisconnected from None
    raise ServerStopping("this gateway replica is shutting down; retry the request") from None


class ModelMetrics:
    """One public model's request metrics with their label children bound once, not looked up per request."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.model = model
        self.requests = metrics.requests
        self.in_flight = metrics.in_flight.labels(model)
        self.duration = metrics.request_duration.labels(model)
        self.first_byte = metrics.time_to_first_byte.labels(model)
        self.overhead = metrics.overhead.labels(model)

    def count(self, backend: str, status: int) -> None:
        self.requests.labels(self.model, backend or "none", str(status)).inc()


class RequestRecorder:
    """Records one request's metrics: status, latency, time to first byte and the gateway's own overhead."""

    __slots__ = ("metrics", "started")

    def __init__(self, metrics: ModelMetrics) -> None:
        self.metrics = metrics
        self.started = time.perf_counter()
        metrics.in_flight.inc()

    def finish(self, status: int, backend: str, upstream_s: float, first_byte_at: float | None = None) -> None:
        now = time.perf_counter()
        elapsed = now - self.started
        m = self.metrics
        m.in_flight.dec()
        m.count(backend, status)
        m.duration.observe(elapsed)
        if first_byte_at is not None:  # streams only: a buffered reply's first byte is its whole duration
            m.first_byte.observe(first_byte_at - self.started)
        if upstream_s:
            m.overhead.observe(max(0.0, elapsed - upstream_s))


async def _end_cut_stream(send: Send, error: ServerStopping, head_sent: bool) -> None:
    """End a stream cut by the server's shutdown with an error event and `[DONE]`, as a backend failure
    does (a 503 where nothing was sent yet); a client that does not read it within a second just loses the
    connection."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            if head_sent:
                await send({"type": "http.response.body", "body": sse_error_event(error)})
            else:
                await send_error(send, error)


def encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """A header mapping in ASGI form."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


async def send_error(send: Send, error: GatewayError) -> None:
    """`error` as an OpenAI-shaped JSON response, with its headers (e.g. `Retry-After`)."""
    await send_body(send, error.status, orjson.dumps(error.body()),
                    [(b"content-type", b"application/json"), *encode_headers(error.headers)])


async def send_body(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """A complete response in two ASGI messages (the server writes them as one)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def send_reply(scope: Scope, receive: Receive, send: Send, reply: Reply, recorder: RequestRecorder) -> None:
    """Send a buffered reply, or relay a stream until it ends, the client disconnects, or, for a client that
    stopped reading, `WRITE_GRACE_S` past the stream's deadline (the connection is then dropped)."""
    if reply.stream is None:
        headers = encode_headers(reply.headers)
        if "content-type" not in reply.headers:
            headers.append((b"content-type", b"application/json"))
        try:
            await send_body(send, reply.status, reply.body, headers)
        finally:  # after the answer has left: the client does not wait for the bookkeeping
            recorder.finish(reply.status, reply.backend, reply.upstream_s)
        return
    stream = reply.stream
    relayed = {name: value for name, value in reply.headers.items() if name != "content-type"}
    first_byte_at: float | None = None
    head_sent = False

    limit = None if reply.deadline is None else reply.deadline + WRITE_GRACE_S

    ended_by: int | None = None  # the status of an error event that ended the stream

    async def relay() -> None:
        nonlocal first_byte_at, head_sent, ended_by
        async with asyncio.timeout_at(limit):
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": [*encode_headers(relayed), *_STREAM_HEADERS]})
            head_sent = True
            async for chunk in stream:
                if first_byte_at is None:
                    first_byte_at = time.perf_counter()
                ended_by = ended_by or stream_error_status(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    status = reply.status
    try:
        await unless_disconnected(scope, receive, relay())
        status = ended_by or status  # counted as what broke it off, not as the 200 its head said
    except ClientDisconnected:
        status = CLIENT_CLOSED
    except TimeoutError:
        status = CLIENT_TOO_SLOW
    except ServerStopping as stopping:
        status = stopping.status
        await _end_cut_stream(send, stopping, head_sent)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()  # ends the upstream request when the stream stopped early
        reply.close()  # and frees it where the stream never started
        recorder.finish(status, reply.backend, reply.upstream_s, first_byte_at)
