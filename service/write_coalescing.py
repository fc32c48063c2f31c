"""A transport wrapper that sends a response's head together with the first body bytes.

uvicorn writes a response's head and its body with separate `transport.write` calls, so a small JSON
answer would leave as two TCP segments: two system calls here and two wake-ups at the client. A write
is held until the next write, which goes out joined with it at once, or until the end of the current
loop turn, whichever comes first: head and body leave in one segment as soon as the body is written,
and a streamed chunk still goes out in the turn it is written. At most one write is held. A large write
(over `JOIN_MAX` bytes) is never joined, which would copy it: what is held leaves first, then it does.
"""

from __future__ import annotations

import asyncio
from typing import Any

JOIN_MAX = 1 << 16  # bytes of a write worth joining with the one held


class CoalescingTransport:
    """Forwards everything to `transport`; `write` is deferred to the end of the loop turn."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self.written = 0  # bytes handed to `transport` so far

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if len(data) > JOIN_MAX:  # joining would copy it: what is held leaves first, then it does
            self.flush()
            self._send(bytes(data))
            return
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
        else:  # the next write: both leave now, joined
            held, self._held = self._held, None
            self._send(held + data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what is held now (also called before closing)."""
        if self._held is not None:
            held, self._held = self._held, None
            self._send(held)

    def _send(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)
            self.written += len(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def sent(self) -> int:
        """Bytes that have left the transport's buffer for the socket so far."""
        return self.written - self._transport.get_write_buffer_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
