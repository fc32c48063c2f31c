"""Turning a strategy's `Reply` into an HTTP response, with request metrics and disconnect handling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from service.metrics import Metrics
from service.types import Reply

T = TypeVar("T")

_STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class ClientDisconnected(Exception):
    """The client went away before the reply was ready; the upstream work was cancelled."""


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its upstream request) if the client disconnects first."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        raise ClientDisconnected
    return task.result()


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


def to_response(reply: Reply, recorder: RequestRecorder) -> Response:
    if reply.stream is None:
        recorder.finish(reply.status, reply.backend, reply.upstream_s)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)
    headers = {**reply.headers, **_STREAM_HEADERS}
    headers.pop("content-type", None)
    return StreamingResponse(_recorded(reply, recorder), status_code=reply.status, headers=headers,
                             media_type="text/event-stream")


async def _recorded(reply: Reply, recorder: RequestRecorder) -> AsyncIterator[bytes]:
    assert reply.stream is not None
    first_byte_at: float | None = None
    try:
        async for chunk in reply.stream:
            if first_byte_at is None:
                first_byte_at = time.perf_counter()
            yield chunk
    finally:
        recorder.finish(reply.status, reply.backend, reply.upstream_s, first_byte_at)
