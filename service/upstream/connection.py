"""One keep-alive HTTP/1.1 connection to a backend, and the response it is reading.

The gateway's calls to vLLM are few in kind (a JSON POST, a streamed POST, two GETs), so this is a
small client rather than a general one: the request head and body leave in one write, the response is
parsed by httptools (the parser uvicorn serves with), and body bytes are handed over as they arrive.
Reading pauses while more than `BUFFER_HIGH` unread bytes are held, and resumes once they are taken, so a
slow client of a fast backend holds a bounded buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

BUFFER_HIGH = 1 << 20  # unread body bytes at which the socket stops being read (until `chunk` takes them)


class UpstreamConnectionError(Exception):
    """The connection to a backend failed, closed early, or carried something that is not HTTP."""


class UpstreamConnectError(UpstreamConnectionError):
    """The backend could not be reached at all (refused, unreachable, or the connect timed out)."""


class ResponseTooLarge(Exception):
    """A body longer than its reader takes (`Response.read`'s `limit`)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a base URL's connections go, and the `Host` header they carry."""

    host: str
    port: int
    tls: bool
    host_header: bytes
    prefix: str  # a base URL's path (`http://h/v1` -> "/v1"), put before every request path

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(parts.hostname, port, tls, (parts.netloc.rpartition("@")[2]).encode("idna"),
                   parts.path.rstrip("/"))


def host_and_port(host: str, port: int) -> str:
    """`host:port` as a URL writes it: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class IdlePool(list["Connection"]):
    """An origin's idle connections (`UpstreamClient`); `retired` once the origin is forgotten."""

    retired = False


class Connection(asyncio.Protocol):
    """An asyncio protocol carrying one request at a time; `send` starts one and returns its response."""

    def __init__(self, idle_pool: IdlePool) -> None:
        self.idle_pool = idle_pool  # where it waits between requests: its origin's
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.idle_since = 0.0
        self.response: Response | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes while no request is outstanding: not a server to keep talking to
            self.close()
            return
        response.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            response.fail(UpstreamConnectionError(f"malformed response from the backend: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.response is not None:
            self.response.connection_lost()

    # httptools callbacks (one response at a time, so `self.response` is set)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.raw_headers.append((name, value))  # type: ignore[union-attr]

    def on_headers_complete(self) -> None:
        self.response.head_complete(self.parser.get_status_code(), self.parser.should_keep_alive())  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self.response.feed(body)  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        self.response.message_complete()  # type: ignore[union-attr]

    # used by the client

    def send(self, data: bytes) -> Response:
        """Write one whole request (head and body) and return the response that will answer it."""
        assert self.transport is not None
        response = self.response = Response(self)
        self.transport.write(data)
        return response

    def reusable(self) -> bool:
        """Whether the connection can carry another request: its answer read whole and kept alive, and all of
        its request sent (a backend may answer, e.g. 413, before it has read the whole body)."""
        response = self.response
        return (not self.lost and response is not None and response.complete and response.keep_alive
                and response.error is None and not self._unsent())

    def close(self) -> None:
        """Close the connection; with request bytes the backend has not read, drop them with it (`close()`
        would keep both for as long as a hung backend reads nothing)."""
        if self.transport is not None and not self.transport.is_closing():
            if self._unsent():
                self.transport.abort()
            else:
                self.transport.close()

    def _unsent(self) -> int:
        """Bytes of the request not yet taken by the backend's socket."""
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class Response:
    """The status and headers once `wait_head()` returns; the body through `read()` or `chunk()`."""

    __slots__ = ("connection", "status", "headers", "raw_headers", "keep_alive", "complete", "error",
                 "received_any", "_head", "_chunks", "_buffered", "_paused", "_waiter")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        self.error: Exception | None = None
        self.received_any = False
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None

    async def wait_head(self) -> None:
        """Until the status line and headers have arrived; raises if the connection failed first."""
        await self._head

    async def chunk(self) -> bytes:
        """The body bytes received since the last call, waiting for some; b"" once the body is complete. All
        that is queued comes at once (at most `BUFFER_HIGH` and one read): a stream whose events arrive
        faster than they are relayed costs one pass of the relay per batch, not per event."""
        while not self._chunks:
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self.connection.resume_reading()
        return data

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; `ResponseTooLarge` once it passes `limit` bytes (None: no limit)."""
        parts, size = [], 0
        while chunk := await self.chunk():
            size += len(chunk)
            if limit is not None and size > limit:
                raise ResponseTooLarge(f"the body is larger than {limit} bytes")
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def read_prefix(self, limit: int) -> bytes:
        """The body's first `limit` bytes at most; the rest is left unread (the connection then closes)."""
        parts, size = [], 0
        while size < limit and (chunk := await self.chunk()):
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)[:limit]

    # fed by the connection

    def head_complete(self, status: int, keep_alive: bool) -> None:
        self.status = status
        self.keep_alive = keep_alive
        self.headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self.raw_headers}
        if not self._head.done():
            self._head.set_result(None)

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if not self._paused and self._buffered > BUFFER_HIGH:
            self._paused = True
            self.connection.pause_reading()
        self._wake()

    def message_complete(self) -> None:
        self.complete = True
        if self._paused:  # nothing more will come, and a pooled connection must notice the server closing it
            self._paused = False
            self.connection.resume_reading()
        self._wake()

    def connection_lost(self) -> None:
        if self.complete:
            return
        if self._head.done() and self._delimited_by_close():
            self.complete = True
            self.keep_alive = False
            self._wake()
        else:
            self.fail(UpstreamConnectionError("the backend closed the connection before the response was complete"))

    def fail(self, error: Exception) -> None:
        if self.error is None and not self.complete:
            self.error = error
            if not self._head.done():
                self._head.set_exception(error)
                self._head.exception()  # seen here: a response nobody awaits must not log it as lost
            self._wake()

    def _delimited_by_close(self) -> bool:
        """An HTTP/1.x body without a length or chunked coding ends where the connection does."""
        return "content-length" not in self.headers and "chunked" not in self.headers.get("transfer-encoding", "")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
