"""Reading a relayed stream's events whole, however its bytes are chunked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from service.strategies.sse import events_of

STREAM = b'data: {"a": 1}\n\ndata: {"b": 2}\r\n\r\ndata: {"c": 3}\n\ndata: [DONE]\n\n'


async def chunked(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, len(STREAM)])
async def test_events_are_whole_whatever_the_chunking(size: int) -> None:
    events = [event async for batch in events_of(chunked(STREAM, size)) for event in batch]
    assert events == [b'data: {"a": 1}', b'data: {"b": 2}', b'data: {"c": 3}', b"data: [DONE]"]


async def test_an_unterminated_last_event_comes_last() -> None:
    batches = [batch async for batch in events_of(chunked(b'data: {"a": 1}\n\ndata: {"b"', 4))]
    assert batches[-1] == [b'data: {"b"'] and [e for b in batches for e in b] == [b'data: {"a": 1}', b'data: {"b"']


async def test_empty_chunks_are_no_events() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"", b"data: a\n\n", b""):
            yield chunk

    assert [batch async for batch in events_of(chunks())] == [[b"data: a"]]


async def test_an_event_that_never_ends_ends_the_stream_with_an_error_and_closes_it() -> None:
    closed = False

    async def endless() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            yield b"data: {}\n\ndata: "
            while True:
                yield b"x" * 1000
        finally:
            closed = True

    batches = [batch async for batch in events_of(endless(), max_event_bytes=10_000)]
    assert batches[0] == [b"data: {}"]
    *_, error, done = batches[-1]
    assert orjson.loads(error.removeprefix(b"data: "))["error"]["message"] == \
        "the backend sent an event longer than 10000 bytes"
    assert done == b"data: [DONE]" and closed
