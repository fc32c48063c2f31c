"""Writes made in one event-loop turn leave as one socket write; closing sends what is held first."""

from __future__ import annotations

import asyncio

from service.write_coalescing import CoalescingTransport


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


async def test_writes_of_one_turn_are_joined() -> None:
    inner = RecordingTransport()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(b"")
    transport.write(b'{"ok": true}')
    assert inner.writes == []
    await asyncio.sleep(0)  # let the loop turn end
    assert inner.writes == [b'HTTP/1.1 200 OK\r\n\r\n{"ok": true}']
    transport.write(b"data: 1\n\n")  # a later turn: its own write
    await asyncio.sleep(0)
    assert inner.writes[1:] == [b"data: 1\n\n"]


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
