"""How the dispatcher frames an upstream event stream: whole events, and whether `[DONE]` has come."""

from __future__ import annotations

import pytest

from service.dispatch import holds_done, whole_events_end


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
