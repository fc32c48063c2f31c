"""Pooled keep-alive connections to the backends, and the one call the gateway makes on them.

`UpstreamClient.request(url, method, path, body, headers)` sends a request on an idle connection of
that origin (or a new one) and returns its `Response` once the head has arrived. The caller reads the
body and then calls `release(response)`: a complete keep-alive response gives its connection back to
the pool, anything else (an error, a stream abandoned half way, a cancelled call) closes it, which is
also how a backend learns that a request was abandoned.

A reused connection can be closed by the server just as a request is written on it (an idle
keep-alive timing out); when it dies before a single byte of the answer arrived, the request goes
once more on a fresh connection.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time

from service.upstream.connection import (
    Connection,
    IdlePool,
    Origin,
    Response,
    UpstreamConnectError,
    UpstreamConnectionError,
)


class UpstreamClient:
    """Keep-alive HTTP/1.1 connections per origin: at most `max_idle_per_origin` kept idle, each for at
    most `idle_timeout_s`."""

    def __init__(self, *, max_idle_per_origin: int = 256, idle_timeout_s: float = 30.0) -> None:
        self.max_idle_per_origin = max_idle_per_origin
        self.idle_timeout_s = idle_timeout_s
        self._idle: dict[Origin, IdlePool] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False

    async def request(self, url: str, method: str, path: str, body: bytes = b"", headers: bytes = b"", *,
                      connect_timeout_s: float | None = None) -> Response:
        """Send a request and wait for the head of its answer. `headers` are ready-encoded header lines
        (`b"Name: value\\r\\n"` each); `Host` and `Content-Length` are added here."""
        origin = origin_of(url)
        data = b"%s %s%s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
            method.encode(), origin.prefix.encode(), path.encode(), origin.host_header, headers, len(body), body)
        connection = self._take_idle(origin)
        if connection is not None:
            try:
                return await _exchange(connection, data)
            except UpstreamConnectionError:
                if connection.response is None or connection.response.received_any:
                    raise  # the server answered something: not the idle-close race, so not safe to resend
        return await _exchange(await self._connect(origin, connect_timeout_s), data)

    def release(self, response: Response) -> None:
        """Done with `response`: its connection goes back to the pool if it can carry another request (and its
        origin has not been forgotten meanwhile)."""
        connection = response.connection
        idle = connection.idle_pool
        if self._closed or not connection.reusable() or idle.retired:
            connection.close()
            return
        connection.response = None
        connection.idle_since = time.monotonic()
        if len(idle) >= self.max_idle_per_origin:
            connection.close()
        else:
            idle.append(connection)

    def forget(self, url: str) -> None:
        """Close the idle connections to `url`'s origin (a replica that is gone); those still in use close when
        they are released."""
        idle = self._idle.pop(origin_of(url), None)
        if idle is not None:
            idle.retired = True
            for connection in idle:
                connection.close()

    async def close(self) -> None:
        """Close every idle connection; responses still being read close theirs when released."""
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()

    def idle_connections(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def _take_idle(self, origin: Origin) -> Connection | None:
        """The most recently used idle connection that is still open and fresh (LIFO keeps few warm)."""
        idle = self._idle.get(origin)
        oldest_fresh = time.monotonic() - self.idle_timeout_s
        while idle:
            connection = idle.pop()
            if connection.idle_since < oldest_fresh:  # released in order: the ones below are older still
                for stale in (connection, *idle):
                    stale.close()
                idle.clear()
            elif not connection.lost:
                return connection
        return None

    async def _connect(self, origin: Origin, timeout_s: float | None) -> Connection:
        if self._closed:
            raise UpstreamConnectionError("the upstream client is closed")
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.tls else None
        idle = self._idle.setdefault(origin, IdlePool())  # before connecting: a `forget` meanwhile retires it
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(lambda: Connection(idle), origin.host,
                                                             origin.port, ssl=tls)
        except TimeoutError:
            raise UpstreamConnectError(f"connecting to {origin.host}:{origin.port} timed out") from None
        except OSError as error:
            raise UpstreamConnectError(f"cannot connect to {origin.host}:{origin.port}: {error}") from None
        return connection

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


@functools.lru_cache(maxsize=1024)
def origin_of(url: str) -> Origin:
    """A base URL, parsed once (base URLs come from the config: a handful)."""
    return Origin.parse(url)


async def _exchange(connection: Connection, data: bytes) -> Response:
    """Send one request on `connection` and wait for the head of its answer; a failure closes it."""
    response = connection.send(data)
    try:
        await response.wait_head()
    except BaseException:
        connection.close()
        raise
    return response


def bearer_header(api_key: str | None) -> bytes:
    """The `Authorization` header line for an API key; none without a key."""
    return f"Authorization: Bearer {api_key}\r\n".encode("latin-1") if api_key else b""
