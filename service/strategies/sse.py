"""Server-sent events of a relayed stream, read whole whatever the chunking, and written back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from service.errors import STATUS_OF_TYPE, UpstreamError, sse_error_event
from service.event_stream import EventBuffer

DATA = b"data: "
EVENT_END = re.compile(rb"\r\n\r\n|\n\n")  # the blank line that ends an event, either line ending
MAX_EVENT_BYTES = 16 << 20  # far past any chat chunk (the dispatcher passes a longer event on in pieces)


def event_json(event: bytes) -> dict[str, Any] | None:
    """The JSON object of one SSE `data:` event, or None ([DONE], comments, anything else)."""
    if not event.startswith(DATA):
        return None
    try:
        value = orjson.loads(event[len(DATA):])
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def stream_error_status(events: bytes) -> int | None:
    """The status that an error event among whole server-sent `events` stands for, or None where they hold
    none: the gateway's own (`sse_error_event`) and vLLM's (`{"error": {...}}`, or older versions'
    `{"object": "error", ...}`). A stream's answer is a 200 by then; this is what it is counted as."""
    if b'"error"' not in events:  # inside a JSON string a quote is escaped: no chunk of text matches
        return None
    for line in events.splitlines():
        event = event_json(line) if b'"error"' in line else None
        if event is None:
            continue
        error = event.get("error") if event.get("object") != "error" else event
        if isinstance(error, dict):
            return _error_status(error)
    return None


def _error_status(error: dict[str, Any]) -> int:
    """An error event's status: its type's, else its own `code` where that is one (vLLM's errors carry types
    like `BadRequestError` and an integer code), else 502."""
    status = STATUS_OF_TYPE.get(str(error.get("type")))
    if status is None:
        code = error.get("code")
        status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else 502
    return status


async def events_of(stream: AsyncIterator[bytes], max_event_bytes: int = MAX_EVENT_BYTES
                    ) -> AsyncIterator[list[bytes]]:
    """The SSE events of `stream` (without their blank-line ends), as many as each chunk completes, then
    whatever the stream left unterminated; the stream is closed however this ends. An event still unfinished
    past `max_event_bytes` ends it instead, with an error event and `[DONE]`: memory stays bounded whatever
    a backend sends."""
    buffer = EventBuffer()
    try:
        async for chunk in stream:
            if ready := buffer.feed(chunk):
                yield EVENT_END.split(ready)[:-1]  # after the last end: at most part of an end (blank lines)
            if buffer.size > max_event_bytes:
                error = UpstreamError(f"the backend sent an event longer than {max_event_bytes} bytes")
                yield EVENT_END.split(sse_error_event(error))[:-1]
                return
        if rest := buffer.take():
            yield [rest]
    finally:
        await _close(stream)


def encoded(value: Any) -> bytes | None:
    """`value` as JSON, or None where it cannot be written back: a backend's JSON is read up to 1,024 levels
    deep, orjson writes 254 (the caller then passes the backend's bytes on as they came)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None


def sse(events: list[bytes]) -> bytes:
    """Events written back, each ended by a blank line."""
    return b"".join(event + b"\n\n" for event in events)


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close an async generator now (its cleanup returns or closes the backend connection)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
