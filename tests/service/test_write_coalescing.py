"""A held write leaves with the next one, or at the end of the loop turn; closing sends what is held first."""

from __future__ import annotations

import asyncio

from service.write_coalescing import JOIN_MAX, CoalescingTransport


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_a_head_leaves_with_the_body_as_soon_as_the_body_is_written() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    assert inner.writes == []
    transport.write(b'{"ok": true}')
    assert inner.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"ok": true}']  # at once, not at the end of the turn
    await asyncio.sleep(0)
    assert len(inner.writes) == 1  # nothing left to flush


async def test_a_large_body_leaves_after_the_head_without_being_copied_into_one_write() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    body = b"x" * (JOIN_MAX + 1)
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(body)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\n", body] and inner.writes[1] is body
    assert transport.written == 19 + len(body)


async def test_a_lone_write_leaves_at_the_end_of_the_turn() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"data: 1\n\n")
    assert inner.writes == []
    await asyncio.sleep(0)  # let the loop turn end
    assert inner.writes == [b"data: 1\n\n"]
    transport.write(b"data: 2\n\n")  # a later turn: its own write
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"data: 2\n\n"]


async def test_close_flushes_first_and_other_calls_pass_through() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert inner.writes == [b"last words"] and inner.closed
    transport.write(b"too late")
    await asyncio.sleep(0)
    assert inner.writes == [b"last words"]  # nothing is written to a closing transport
    assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
