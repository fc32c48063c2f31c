"""Counting generated tokens from replies: buffered, streamed with a final usage chunk, or with running usage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson

from service.strategies.usage import count_completion_tokens
from service.types import Reply


class Tally:
    def __init__(self) -> None:
        self.total = 0.0

    def inc(self, amount: float = 1) -> None:
        self.total += amount


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def usage(completion: int) -> dict[str, object]:
    return {"usage": {"prompt_tokens": 9, "completion_tokens": completion, "total_tokens": 9 + completion}}


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


def counted(data: bytes, size: int) -> float:
    """What a stream of `data`, arriving in `size`-byte pieces, counts once read to its end."""
    tally = Tally()
    reply = Reply(status=200, headers={}, stream=pieces(data, size))
    count_completion_tokens(reply, tally)

    async def read() -> None:
        assert reply.stream is not None
        async for _ in reply.stream:
            pass

    asyncio.run(read())
    return tally.total


def test_a_buffered_reply_counts_its_usage() -> None:
    tally = Tally()
    count_completion_tokens(Reply(status=200, headers={}, body=orjson.dumps({"choices": [], **usage(42)})), tally)
    count_completion_tokens(Reply(status=500, headers={}, body=orjson.dumps(usage(7))), tally)
    assert tally.total == 42


def test_a_stream_counts_its_final_usage_chunk_once() -> None:
    data = sse({"choices": [{"delta": {"content": "a"}}]}, {"choices": [], **usage(12)})
    assert counted(data, size=5) == 12
    assert counted(data, size=len(data)) == 12


def test_running_usage_on_every_chunk_counts_the_last_value_only() -> None:
    # vLLM's stream_options.continuous_usage_stats: every chunk carries the count so far
    running = ({"choices": [{"delta": {"content": "x"}}], **usage(n)} for n in range(1, 6))
    data = sse(*running, {"choices": [], **usage(5)})
    assert counted(data, size=3) == 5
    assert counted(data, size=len(data)) == 5
