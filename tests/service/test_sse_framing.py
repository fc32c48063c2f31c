"""How the dispatcher frames an upstream event stream: whole events, and whether `[DONE]` has come."""

from __future__ import annotations

import asyncio

import pytest

from service.backends.pool import ReplicaPool
from service.config import parse_settings
from service.dispatch import Dispatcher, holds_done
from service.event_stream import whole_events_end
from service.metrics import Metrics
from service.types import Reply
from tests.harness import direct_config


@pytest.mark.parametrize(("data", "end"), [
    (b"", 0),
    (b"data: {\"a\": 1}", 0),  # an event whose end has not arrived
    (b"data: 1\n\ndata: 2", 9),
    (b"data: 1\r\n\r\ndata: 2\r\n\r\n", 22),
    (b"data: 1\n\n: keep-alive\n\n", 23),
])
def test_whole_events_end(data: bytes, end: int) -> None:
    assert whole_events_end(data) == end


@pytest.mark.parametrize(("events", "done"), [
    (b"data: [DONE]\n\n", True),
    (b"data: {\"x\": 1}\n\ndata: [DONE]\n\n", True),
    (b"data: [DONE]\n\n: keep-alive\n\n", True),  # what follows `[DONE]` does not undo it
    (b"data: {\"content\": \"data: [DONE]\"}\n\n", False),  # the words inside an answer are not the event
    (b"data: {\"x\": 1}\n\n", False),
])
def test_holds_done(events: bytes, done: bool) -> None:
    assert holds_done(events) is done


class Pieces:
    """A backend response whose body arrives in the given pieces."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = iter(pieces)

    async def chunk(self) -> bytes:
        return next(self.pieces, b"")


STREAM = b'data: {"a": 1}\n\ndata: {"b": 2}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n'


async def relayed(pieces: list[bytes]) -> list[bytes]:
    settings = parse_settings(direct_config({"m": ["http://127.0.0.1:9"]}))
    pool = ReplicaPool(settings.backends, settings.dispatch)
    dispatcher = Dispatcher(settings, pool, None, Metrics())  # type: ignore[arg-type]
    reply = Reply(status=200, headers={})
    stream = dispatcher._relay_stream(Pieces(pieces), pool.replicas("m")[0], reply,  # type: ignore[arg-type]
                                      asyncio.get_running_loop().time() + 10)
    return [piece async for piece in stream]


@pytest.mark.parametrize("split", ["bytes", "halves", "whole"])
async def test_a_stream_in_any_pieces_is_relayed_in_whole_events(split: str) -> None:
    if split == "bytes":
        cuts = [[STREAM[i:i + 1] for i in range(len(STREAM))]]
    elif split == "halves":
        cuts = [[STREAM[:i], STREAM[i:]] for i in range(1, len(STREAM))]
    else:
        cuts = [[STREAM]]
    ends = {i + 1 for i in range(len(STREAM)) if STREAM[:i + 1].endswith((b"\n\n", b"\r\n\r\n"))}
    for pieces in cuts:
        out = await relayed(pieces)
        assert b"".join(out) == STREAM
        offsets = [len(b"".join(out[:k + 1])) for k in range(len(out))]
        assert set(offsets) <= ends  # every piece ends where an event does
