"""Reading completion-token counts from replies, buffered or streamed, without holding the stream back.

A stream carries its count only where `stream_options.include_usage` asked for it, and most clients do not.
A strategy that counts tokens asks for it itself (`with_usage`) and takes the usage chunk out again for such
clients (`hide_added_usage`)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any, Protocol

from service.strategies.sse import event_json, events_of, sse
from service.types import GatewayRequest, Reply

_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


class Counter(Protocol):
    def inc(self, amount: float = 1) -> None: ...


def count_completion_tokens(reply: Reply, counter: Counter) -> None:
    """Add the reply's `usage.completion_tokens` to `counter` (for a stream: when the stream ends)."""
    if reply.stream is None:
        if reply.status == 200:
            match = _COMPLETION_TOKENS.search(reply.body)
            if match:
                counter.inc(int(match.group(1)))
        return
    reply.stream = _counting(reply.stream, counter)


async def _counting(stream: AsyncIterator[bytes], counter: Counter) -> AsyncIterator[bytes]:
    """Relay `stream`, then add the last `completion_tokens` it carried: with vLLM's
    `stream_options.continuous_usage_stats` every chunk carries the running count, so only the last
    one is the answer's; a stream the client left counts what it saw."""
    tail, last = b"", None
    try:
        async for chunk in stream:
            yield chunk
            window = tail + chunk
            for match in _COMPLETION_TOKENS.finditer(window):
                last = int(match.group(1))
            tail = window[-64:]
    finally:
        if last is not None:
            counter.inc(last)


def asks_usage(body: dict[str, Any]) -> bool:
    """Whether a streamed request asks for the usage chunk itself."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def with_usage(request: GatewayRequest, body: dict[str, Any]) -> dict[str, Any]:
    """`body` asking for the usage chunk where `request` streams (the client's other stream options kept)."""
    if not request.stream or asks_usage(body):
        return body
    options = {**body["stream_options"]} if isinstance(body.get("stream_options"), dict) else {}
    options.pop("continuous_usage_stats", None)  # with include_usage it puts usage on every chunk: not asked for
    return {**body, "stream_options": {**options, "include_usage": True}}


def hide_added_usage(request: GatewayRequest, reply: Reply) -> Reply:
    """The reply without the usage chunk `with_usage` asked for, where the client did not ask for it."""
    if reply.stream is not None and not asks_usage(request.body):
        reply.stream = _without_usage(reply.stream)
    return reply


async def _without_usage(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async for events in events_of(stream):
        kept = [event for event in events if not _usage_only(event)]
        if kept:
            yield sse(kept)


def _usage_only(event: bytes) -> bool:
    """The chunk `include_usage` adds: usage and no choices."""
    if b'"usage"' not in event:  # every other chunk, unparsed
        return False
    chunk = event_json(event)
    return chunk is not None and chunk.get("choices") == [] and chunk.get("usage") is not None
