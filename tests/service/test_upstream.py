"""The backend HTTP client against raw loopback servers that answer byte by byte as each test says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from service.upstream import Origin, UpstreamClient, UpstreamConnectError, UpstreamConnectionError, bearer_header
from service.upstream.connection import BUFFER_HIGH, Response

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Server:
    """A loopback server running `handler` once per connection; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.connected = asyncio.Condition()
        self.closed = asyncio.Event()  # set when a connection's client side hung up
        self.url = ""

    async def wait_connections(self, count: int) -> None:
        async with self.connected:
            await self.connected.wait_for(lambda: self.connections >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        async with self.connected:
            self.connected.notify_all()
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    server = Server(handler)
    listener = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    server.url = f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"
    async with listener:
        yield server


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (bodies by Content-Length, as the client sends them)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length"))
    return head, await reader.readexactly(length)


def answering(reply: bytes) -> Handler:
    """A handler that reads one request, writes `reply` and closes the connection."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    return handler


async def answer_every_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request(reader)
        writer.write(OK)


async def test_a_request_carries_host_length_headers_and_the_base_urls_path() -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(OK)

    async with serve(handler) as server:
        client = UpstreamClient()
        response = await client.request(server.url + "/prefix/", "POST", "/v1/completions", b'{"a":1}',
                                        b"Content-Type: application/json\r\n" + bearer_header("k"))
        assert (response.status, await response.read()) == (200, b"{}")
        assert response.headers["content-type"] == "application/json"
        await client.close()
    head, body = seen[0]
    port = server.url.rsplit(":", 1)[1]
    assert head == (b"POST /prefix/v1/completions HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nContent-Type: application/json\r\n"
                    b"Authorization: Bearer k\r\nContent-Length: 7\r\n\r\n" % port.encode())
    assert body == b'{"a":1}'


async def test_keep_alive_connections_are_reused() -> None:
    async with serve(answer_every_request) as server:
        client = UpstreamClient()
        for _ in range(5):
            response = await client.request(server.url, "GET", "/health")
            assert await response.read() == b"{}"
            client.release(response)
        assert server.connections == 1
        assert client.idle_connections() == 1
        await client.close()


def closing(response: Response) -> bool:
    transport = response.connection.transport
    return transport is None or transport.is_closing()


async def test_a_response_released_after_its_origin_is_forgotten_closes_its_connection() -> None:
    async with serve(answer_every_request) as server:
        client = UpstreamClient()
        kept = await client.request(server.url, "GET", "/health")
        under_way = await client.request(server.url, "GET", "/health")
        await kept.read()
        client.release(kept)
        client.forget(server.url)  # the replica left discovery while `under_way` was being answered
        assert client.idle_connections() == 0 and closing(kept)
        await under_way.read()
        client.release(under_way)
        assert client.idle_connections() == 0 and closing(under_way)
        again = await client.request(server.url, "GET", "/health")  # the same address back: pooled afresh
        await again.read()
        client.release(again)
        assert client.idle_connections() == 1 and server.connections == 3
        await client.close()


async def test_a_connection_opened_while_its_origin_is_forgotten_is_not_pooled() -> None:
    async with serve(answer_every_request) as server:
        client = UpstreamClient()
        connecting = asyncio.ensure_future(client.request(server.url, "GET", "/health"))
        await asyncio.sleep(0)  # the request is connecting
        client.forget(server.url)  # as discovery drops a draining pod
        response = await connecting
        await response.read()
        client.release(response)
        assert client.idle_connections() == 0 and closing(response)
        await client.close()


async def test_concurrent_requests_open_one_connection_each_and_keep_them() -> None:
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await release.wait()
            writer.write(OK)

    async with serve(slow) as server:
        client = UpstreamClient(max_idle_per_origin=2)
        calls = [asyncio.ensure_future(client.request(server.url, "GET", "/x")) for _ in range(3)]
        await server.wait_connections(3)
        release.set()
        for response in await asyncio.gather(*calls):
            assert await response.read() == b"{}"
            client.release(response)
        assert client.idle_connections() == 2  # the third is closed: over the idle limit
        await client.close()


async def test_a_chunked_body_arrives_piece_by_piece_before_it_is_complete() -> None:
    more = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     b"6\r\ndata: \r\n")
        await more.wait()
        writer.write(b"3\r\none\r\n0\r\n\r\n")
        await read_request(reader)
        writer.write(OK)

    async with serve(handler) as server:
        client = UpstreamClient()
        response = await client.request(server.url, "POST", "/v1/completions", b"{}")
        assert await response.chunk() == b"data: "  # before the server sends the rest
        more.set()
        assert await response.read() == b"one"
        client.release(response)
        response = await client.request(server.url, "POST", "/v1/completions", b"{}")
        assert await response.read() == b"{}"
        assert server.connections == 1
        await client.close()


async def test_a_body_delimited_by_the_connection_closing_is_complete_and_the_connection_not_kept() -> None:
    async with serve(answering(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")) as server:
        client = UpstreamClient()
        response = await client.request(server.url, "GET", "/metrics")
        assert await response.read() == b"all of it"
        client.release(response)
        assert client.idle_connections() == 0
        await client.close()


async def test_a_kept_connection_the_server_closed_on_arrival_is_replaced_without_an_error() -> None:
    async def once_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)  # keep-alive, as far as the client can tell ...
        await read_request(reader)  # ... but the next request finds the server gone (an idle timeout's race)

    async with serve(once_then_drop) as server:
        client = UpstreamClient()
        for _ in range(3):
            response = await client.request(server.url, "POST", "/v1/completions", b"{}")
            assert await response.read() == b"{}"
            client.release(response)
        assert server.connections == 3
        await client.close()


async def test_a_kept_connection_that_dies_after_answering_part_of_the_head_is_not_resent() -> None:
    async def once_then_half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK)
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")  # the server took the request: sending it again could run it twice

    async with serve(once_then_half) as server:
        client = UpstreamClient()
        first = await client.request(server.url, "POST", "/v1/completions", b"{}")
        await first.read()
        client.release(first)
        with pytest.raises(UpstreamConnectionError):
            await client.request(server.url, "POST", "/v1/completions", b"{}")
        assert server.connections == 1
        await client.close()


async def test_a_connection_lost_mid_response_is_an_error_not_a_retry() -> None:
    async with serve(answering(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")) as server:
        client = UpstreamClient()
        response = await client.request(server.url, "POST", "/v1/completions", b"{}")
        with pytest.raises(UpstreamConnectionError, match="before the response was complete"):
            await response.read()
        assert server.connections == 1
        await client.close()


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with serve(answer_every_request) as server:
        url = server.url
    client = UpstreamClient()
    with pytest.raises(UpstreamConnectError):
        await client.request(url, "GET", "/health")
    await client.close()


async def test_a_reply_that_is_not_http_is_a_connection_error() -> None:
    async with serve(answering(b"SSH-2.0-OpenSSH\r\n\r\n")) as server:
        client = UpstreamClient()
        with pytest.raises(UpstreamConnectionError, match="malformed"):
            await client.request(server.url, "GET", "/health")
        await client.close()


async def test_a_cancelled_call_closes_its_connection() -> None:
    async def never_answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # returns when the client closes the connection
        server.closed.set()

    async with serve(never_answers) as server:
        client = UpstreamClient()
        call = asyncio.ensure_future(client.request(server.url, "POST", "/v1/completions", b"{}"))
        await server.wait_connections(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(server.closed.wait(), 5)  # the backend learns the request was abandoned
        await client.close()


async def test_a_call_abandoned_while_the_backend_reads_nothing_drops_the_unsent_body() -> None:
    """`close()` would keep the connection, and what is left of the body, for as long as the backend is hung."""
    read_on = asyncio.Event()
    received: list[int] = []

    async def reads_only_when_told(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_on.wait()
        total = 0
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(1 << 16):
                total += len(chunk)
        received.append(total)
        server.closed.set()

    body = b"x" * (64 << 20)  # far more than the sockets' buffers hold
    async with serve(reads_only_when_told) as server:
        client = UpstreamClient()
        call = asyncio.ensure_future(client.request(server.url, "POST", "/v1/completions", body))
        await server.wait_connections(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        read_on.set()
        await asyncio.wait_for(server.closed.wait(), 30)
        assert received[0] < len(body)  # what the sockets held, then the reset: the rest was never sent
        await client.close()


async def test_a_connection_answered_before_its_body_was_sent_is_not_reused() -> None:
    """A backend (or a proxy before it) may answer, say 413, without reading the body: the rest of that body
    would be read as the start of the next request on the connection."""
    async def refuses_at_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 2\r\n\r\n{}")
        await asyncio.Event().wait()  # keeps the connection open, reading nothing more

    async with serve(refuses_at_once) as server:
        client = UpstreamClient()
        response = await client.request(server.url, "POST", "/v1/completions", b"x" * (64 << 20))
        assert response.status == 413 and await response.read(1024) == b"{}"
        client.release(response)
        assert client.idle_connections() == 0
        await client.close()


async def test_an_abandoned_response_is_not_reused() -> None:
    async def long_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf")

    async with serve(long_body) as server:
        client = UpstreamClient()
        response = await client.request(server.url, "GET", "/x")
        assert await response.chunk() == b"half"
        client.release(response)  # not read to the end: the connection cannot carry another request
        assert client.idle_connections() == 0
        await client.close()


async def test_reading_pauses_while_the_reader_falls_behind() -> None:
    size = 16 * BUFFER_HIGH
    payload = bytes(range(256)) * (size // 256)

    async def fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size + payload)
        await writer.drain()

    async with serve(fast) as server:
        client = UpstreamClient()
        response = await client.request(server.url, "GET", "/big")
        connection, transport = response.connection, response.connection.transport
        assert transport is not None
        paused = asyncio.Event()
        pause = connection.pause_reading
        connection.pause_reading = lambda: (pause(), paused.set())  # type: ignore[method-assign]
        if transport.is_reading():  # the socket delivers while nobody reads, until the limit
            await asyncio.wait_for(paused.wait(), 5)
        assert not transport.is_reading()
        assert response._buffered < 2 * BUFFER_HIGH  # bounded, though 16x as much is on its way
        assert await response.read() == payload
        await client.close()


class RecordingConnection:
    """Stands in for a `Connection` under a `Response`: records whether reading is on."""

    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def test_a_response_completed_while_paused_reads_again_so_its_pooled_connection_works() -> None:
    connection = RecordingConnection()
    response = Response(connection)  # type: ignore[arg-type]
    response.head_complete(200, keep_alive=True)
    response.feed(b"x" * (BUFFER_HIGH + 1))
    assert not connection.reading
    response.message_complete()  # the last bytes arrived in the read that crossed the limit
    assert connection.reading  # else the next request on it, or the server's close, would never be read
    assert len(await response.read()) == BUFFER_HIGH + 1


async def test_what_arrived_while_nobody_read_comes_in_one_chunk_and_reading_resumes() -> None:
    connection = RecordingConnection()
    response = Response(connection)  # type: ignore[arg-type]
    response.head_complete(200, keep_alive=True)
    for event in (b"data: 1\n\n", b"data: 2\n\n", b"x" * BUFFER_HIGH):
        response.feed(event)
    assert not connection.reading
    assert await response.chunk() == b"data: 1\n\ndata: 2\n\n" + b"x" * BUFFER_HIGH  # one pass of the relay
    assert connection.reading
    response.feed(b"data: 3\n\n")
    response.message_complete()
    assert (await response.chunk(), await response.chunk()) == (b"data: 3\n\n", b"")


async def test_idle_connections_past_the_idle_timeout_are_not_reused() -> None:
    async with serve(answer_every_request) as server:
        client = UpstreamClient(idle_timeout_s=0)
        for _ in range(3):
            response = await client.request(server.url, "GET", "/health")
            await response.read()
            client.release(response)
        assert server.connections == 3
        await client.close()


def test_origins_parse_host_port_scheme_and_path() -> None:
    assert Origin.parse("http://10.0.0.1:8000") == Origin("10.0.0.1", 8000, False, b"10.0.0.1:8000", "")
    assert Origin.parse("https://vllm.svc/v1/") == Origin("vllm.svc", 443, True, b"vllm.svc", "/v1")
    with pytest.raises(ValueError, match="not an http"):
        Origin.parse("ftp://x")
