"""A server-sent event stream's bytes as they arrive, handed back in whole events whatever the chunking.

The dispatcher relays a backend's stream through it, and the strategies that read a stream event by event
(`service.strategies.sse.events_of`) do too.
"""

from __future__ import annotations


def whole_events_end(data: bytes) -> int:
    """The length of the longest prefix of `data` made of whole server-sent events (0: none)."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


class EventBuffer:
    """Bytes fed chunk by chunk, taken back up to the end of the last whole event.

    Only each new chunk is searched for an event's end (with the three bytes before it: an end may straddle
    two chunks), and the chunks of an unfinished event are joined once, when it ends: a long event arriving
    in small pieces costs time in its length, not in its length squared.
    """

    def __init__(self) -> None:
        self._held: list[bytes] = []  # the start of an event whose end has not arrived, as it came
        self.size = 0  # their bytes
        self._tail = b""  # their last three

    def feed(self, chunk: bytes) -> bytes:
        """The whole events that `chunk` completes, with the held bytes they start with (b"": none yet)."""
        if not chunk:
            return b""
        end = whole_events_end(chunk)
        if end:
            end += self.size
        elif self._held and (straddling := whole_events_end(self._tail + chunk[:3])):
            end = self.size - len(self._tail) + straddling
        self._held.append(chunk)
        self.size += len(chunk)
        self._tail = (self._tail + chunk[-3:])[-3:]
        return self.take(end) if end else b""

    def take(self, length: int | None = None) -> bytes:
        """The first `length` bytes held (None: all of them), held no longer."""
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        ready, rest = (data, b"") if length is None else (data[:length], data[length:])
        self._held, self.size, self._tail = ([rest], len(rest), rest[-3:]) if rest else ([], 0, b"")
        return ready
