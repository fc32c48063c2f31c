"""Server-sent events of a relayed stream, read whole whatever the chunking, and written back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

DATA = b"data: "
EVENT_END = re.compile(rb"\r\n\r\n|\n\n")  # the blank line that ends an event, either line ending


def event_json(event: bytes) -> dict[str, Any] | None:
    """The JSON object of one SSE `data:` event, or None ([DONE], comments, anything else)."""
    if not event.startswith(DATA):
        return None
    try:
        value = orjson.loads(event[len(DATA):])
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def events_of(stream: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
    """The SSE events of `stream` (without their blank-line ends), as many as each chunk completes, then
    whatever the stream left unterminated; the stream is closed however this ends."""
    buffer = b""
    try:
        async for chunk in stream:
            scanned = max(0, len(buffer) - 3)  # an event's end may straddle the chunks: the held part's last bytes
            buffer += chunk
            if EVENT_END.search(buffer, scanned) is None:
                continue  # the event goes on; what was held is not scanned again
            *events, buffer = EVENT_END.split(buffer)
            yield events
        if buffer:
            yield [buffer]
    finally:
        await _close(stream)


def sse(events: list[bytes]) -> bytes:
    """Events written back, each ended by a blank line."""
    return b"".join(event + b"\n\n" for event in events)


async def _close(stream: AsyncIterator[bytes]) -> None:
    """Close an async generator now (its cleanup returns or closes the backend connection)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
