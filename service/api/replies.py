"""Sending a strategy's `Reply` over ASGI: buffered, or a stream relayed until it ends, its client leaves or
stops reading, or the server stops; each request recorded (`recording`) however it ended."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence

import orjson
from starlette.types import Receive, Scope, Send

from service.api.disconnect import ClientDisconnected, unless_disconnected
from service.api.recording import CLIENT_CLOSED, CLIENT_TOO_SLOW, RequestRecorder
from service.errors import GatewayError, ServerStopping, sse_error_event
from service.http_protocol import ABORT_CONNECTION
from service.strategies.sse import stream_error_status
from service.types import Reply

# How long past a stream's deadline a client that stopped reading keeps its connection: the stream's own
# timeout (an error event, then [DONE]) comes first.
WRITE_GRACE_S = 5.0
Headers = Sequence[tuple[bytes, bytes]]  # ASGI header lines
JSON_CONTENT = (b"content-type", b"application/json")
_STREAM_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                   (b"x-accel-buffering", b"no"))


def encode_headers(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    """A header mapping in ASGI form."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]


async def send_error(send: Send, error: GatewayError, extra: Headers) -> None:
    """`error` as an OpenAI-shaped JSON response, with its headers (e.g. `Retry-After`) and `extra`."""
    await send_body(send, error.status, orjson.dumps(error.body()),
                    [JSON_CONTENT, *encode_headers(error.headers), *extra])


async def send_body(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """A complete response in two ASGI messages (the server writes them as one)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


async def send_reply(scope: Scope, receive: Receive, send: Send, reply: Reply, recorder: RequestRecorder,
                     extra: Headers) -> None:
    """Send a buffered reply, or relay a stream until it ends, the client disconnects, or, for a client that
    stopped reading, `WRITE_GRACE_S` past the stream's deadline (the connection is then dropped); `extra`:
    header lines of the gateway's own, on whatever response head is sent."""
    if reply.stream is None:
        headers = [*encode_headers(reply.headers), *extra]
        if "content-type" not in reply.headers:
            headers.append(JSON_CONTENT)
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
                        "headers": [*encode_headers(relayed), *_STREAM_HEADERS, *extra]})
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
        abort = (scope.get("extensions") or {}).get(ABORT_CONNECTION)
        if abort is not None:
            abort()  # `close()` would wait for the client to read what is unsent, for ever
    except ServerStopping as stopping:
        status = stopping.status
        await _end_cut_stream(send, stopping, head_sent, extra)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()  # ends the upstream request when the stream stopped early
        reply.close()  # and frees it where the stream never started
        recorder.finish(status, reply.backend, reply.upstream_s, first_byte_at)


async def _end_cut_stream(send: Send, error: ServerStopping, head_sent: bool, extra: Headers) -> None:
    """End a stream cut by the server's shutdown with an error event and `[DONE]`, as a backend failure
    does (a 503 where nothing was sent yet); a client that does not read it within a second just loses the
    connection."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            if head_sent:
                await send({"type": "http.response.body", "body": sse_error_event(error)})
            else:
                await send_error(send, error, extra)
