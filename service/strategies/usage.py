"""Reading completion-token counts from replies, buffered or streamed, without holding the stream back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Protocol

from service.types import Reply

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
