"""Sending a strategy's `Reply` over ASGI, with request metrics and disconnect handling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from typing import TypeVar

from starlette.types import Receive, Scope, Send

from service.http_protocol import CONNECTION_LOST
from service.metrics import Metrics
from service.types import Reply

T = TypeVar("T")

_STREAM_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no"))


class ClientDisconnected(Exception):
    """The client went away before the reply was done; the upstream work was cancelled."""


async def _cancel_on_disconnect(receive: Receive, task: asyncio.Task[object]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    task.cancel()


async def unless_disconnected(scope: Scope, receive: Receive, work: Awaitable[T]) -> T:
    """Await `work` in this task, cancelling it (and so its upstream request) if the client disconnects.

    The server's connection-lost future (`CONNECTION_LOST` in the scope's extensions) is watched where
    there is one; otherwise a watcher task waits on `receive()`.
    """
    task = asyncio.current_task()
    assert task is not None
    lost: asyncio.Future[None] | None = scope.get("extensions", {}).get(CONNECTION_LOST)
    watcher = asyncio.ensure_future(_cancel_on_disconnect(receive, task)) if lost is None else lost

    def cancel(_: object) -> None:
        task.cancel()

    if lost is not None:
        if lost.done():
            close = getattr(work, "close", None)  # a coroutine never started
            if close is not None:
                close()
            raise ClientDisconnected
        lost.add_done_callback(cancel)
    try:
        return await work
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            task.uncancel()
            raise ClientDisconnected from None
        raise
    finally:
        if lost is None:
            watcher.cancel()
        else:
            lost.remove_done_callback(cancel)


class RequestRecorder:
    """Records one request's metrics: status, latency, time to first byte and the gateway's own overhead."""

    __slots__ = ("metrics", "model", "started")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.metrics = metrics
        self.model = model
        self.started = time.perf_counter()
        metrics.in_flight.labels(model).inc()

    def finish(self, status: int, backend: str, upstream_s: float, first_byte_at: float | None = None) -> None:
        now = time.perf_counter()
        elapsed = now - self.started
        m = self.metrics
        m.in_flight.labels(self.model).dec()
        m.requests.labels(self.model, backend or "none", str(status)).inc()
        m.request_duration.labels(self.model).observe(elapsed)
        m.time_to_first_byte.labels(self.model).observe((first_byte_at or now) - self.started)
        if upstream_s:
            m.overhead.labels(self.model).observe(max(0.0, elapsed - upstream_s))


def _headers(headers: dict[str, str], *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()
            if name.lower() != "content-type" or not extra] + list(extra)


async def send_body(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """A complete response in two ASGI messages (the server writes them as one)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def send_reply(scope: Scope, receive: Receive, send: Send, reply: Reply, recorder: RequestRecorder) -> None:
    """Send a buffered reply, or relay a stream until it ends or the client disconnects."""
    if reply.stream is None:
        recorder.finish(reply.status, reply.backend, reply.upstream_s)
        headers = _headers(reply.headers)
        if "content-type" not in reply.headers:
            headers.append((b"content-type", b"application/json"))
        await send_body(send, reply.status, reply.body, headers)
        return
    first_byte_at: float | None = None
    status = reply.status
    try:
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": _headers(reply.headers, *_STREAM_HEADERS)})

        async def relay() -> None:
            nonlocal first_byte_at
            assert reply.stream is not None
            async for chunk in reply.stream:
                if first_byte_at is None:
                    first_byte_at = time.perf_counter()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

        await unless_disconnected(scope, receive, relay())
    except ClientDisconnected:
        status = CLIENT_CLOSED
    finally:
        aclose = getattr(reply.stream, "aclose", None)
        if aclose is not None:
            await aclose()  # ends the upstream request when the stream stopped early
        recorder.finish(status, reply.backend, reply.upstream_s, first_byte_at)


# Status nginx uses for "client closed request": recorded, never sent.
CLIENT_CLOSED = 499
