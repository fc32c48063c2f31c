"""uvicorn's httptools protocol with the limits on a request's head and body that uvicorn does not enforce.

- Size: httptools accumulates a header by concatenating the pieces it reads, so one client sending a
  32 MiB header kept the event loop busy for ~9 s, stalling every other client (and failing health
  checks, which ejected healthy replicas). A head larger than `max_head_bytes` is answered 431.
- Time: a connection whose request head is not complete within `head_timeout_s` (a slow-loris client
  trickling headers, or one that opened a connection and went quiet) is answered 408 and closed,
  so such clients cannot pile up open connections. Likewise a body still incomplete `body_timeout_s`
  after its head (408, or the connection closed if the answer has started). The timer is armed only when
  a body does not arrive with its head, so the usual request pays nothing for it. Body sizes are the
  handlers' business: they read bodies with their own limit.

Unread answers: a response handed to the transport in whole is done for the handler, but the bytes the client
has not read stay in the transport's buffer, and `close()` (keep-alive's, or `Connection: close`'s) waits for
them. A client that reads none of the connection's bytes for `unsent_timeout_s` has it aborted, so clients that
stopped reading cannot pile up the answers' memory.

A request's body complete, reading resumes (uvicorn leaves it paused after a large body until the handler
calls `receive()` again), so a client that leaves is seen at once; a pipelined request still waits paused.

Writes go through a `CoalescingTransport`, so a response's head and body leave in one segment, and each
request's scope carries the connection's `CONNECTION_LOST` future (under `extensions`), so a handler
learns of a client that went away without a task waiting on `receive()`, and its `ABORT_CONNECTION`
callable, which drops the connection with its unsent bytes: a handler that gives up on a client that stopped
reading a stream must not leave it to `close()`, which would wait for that client for ever.

Shutdown: uvicorn asks every connection to stop and gives open requests `timeout_graceful_shutdown`
before it cancels them, which cuts a stream mid-answer. `stop_cutoff_s` after that request, shortly
before the cancellation, the scope's `SERVER_STOPPING` future is resolved, and the handler ends the
request itself: a stream with an error event and `[DONE]`, a request still waiting for its backend
with a 503 the client may retry on another replica.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.errors import error_body
from service.request_id import HEADER, request_id
from service.write_coalescing import CoalescingTransport


def _reply(status: int, reason: str, message: str, code: str, request_id: str) -> bytes:
    body = orjson.dumps(error_body(message, "invalid_request_error", code=code))
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{HEADER}: {request_id}\r\nconnection: close\r\n\r\n").encode() + body


CONNECTION_LOST = "switchyard.connection_lost"
SERVER_STOPPING = "switchyard.server_stopping"
ABORT_CONNECTION = "switchyard.abort_connection"


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 65_536
    head_timeout_s = 10.0
    body_timeout_s = 30.0
    stop_cutoff_s = 30.0
    unsent_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._in_body = False  # between the end of a request head and the end of its body
        self._head_deadline: asyncio.TimerHandle | None = None
        self._body_deadline: asyncio.TimerHandle | None = None
        self._rejected = False  # answered by this guard: the rest of the bytes are ignored
        self._lost: asyncio.Future[None] = self.loop.create_future()  # resolved when the connection is lost
        self._stopping: asyncio.Future[None] = self.loop.create_future()  # resolved at the shutdown cutoff
        self._stop_timer: asyncio.TimerHandle | None = None
        self._unsent_watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(cast(asyncio.Transport, self._coalescing))
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        self._disarm_body_deadline()
        for timer in (self._stop_timer, self._unsent_watch):
            if timer is not None:
                timer.cancel()
        if not self._lost.done():
            self._lost.set_result(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if not self._in_body:
            self._arm_deadline()
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._in_body and self._head_bytes > self.max_head_bytes:
            self._reject(431, "Request Header Fields Too Large",
                         f"request head is larger than {self.max_head_bytes} bytes")
        elif self._in_body and self._body_deadline is None and not self._rejected:
            self._body_deadline = self.loop.call_later(self.body_timeout_s, self._body_too_slow)

    def on_headers_complete(self) -> None:
        self._in_body = True
        self._head_bytes = 0
        self._disarm_deadline()
        # The byte count above may include a body read together with the head: measure the head itself.
        head = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head > self.max_head_bytes:
            self._reject(431, "Request Header Fields Too Large",
                         f"request head is larger than {self.max_head_bytes} bytes")
            return
        extensions = cast(dict[str, Any], self.scope.setdefault("extensions", {}))
        extensions[CONNECTION_LOST] = self._lost
        extensions[SERVER_STOPPING] = self._stopping
        extensions[ABORT_CONNECTION] = self._abort
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._rejected:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._rejected:
            super().on_message_complete()
        self._in_body = False
        self._disarm_body_deadline()
        if not self.pipeline:  # uvicorn pauses reading past 64 KiB of body and resumes only in `receive()`:
            self.flow.resume_reading()  # read on, or a client that leaves is never seen (its FIN unread)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._unsent_watch is None and self.transport.get_write_buffer_size():
            self._watch_unsent(self._coalescing.sent())

    def _watch_unsent(self, sent: int) -> None:
        self._unsent_watch = self.loop.call_later(self.unsent_timeout_s, self._check_unsent, sent)

    def _check_unsent(self, sent_before: int) -> None:
        """Abort a connection with bytes unsent whose client read nothing in `unsent_timeout_s`; progress is
        bytes that left the buffer, so a later answer on the same connection counts as progress too."""
        self._unsent_watch = None
        if not self.transport.get_write_buffer_size():
            return
        sent = self._coalescing.sent()
        if sent == sent_before:
            self._abort()  # `close()` would wait for the client to read them
            return
        self._watch_unsent(sent)

    def _abort(self) -> None:
        """Drop the connection now, unsent bytes and all; a request under way on it reads as disconnected."""
        if self.cycle is not None:
            self.cycle.disconnected = True  # so uvicorn does not log its response as left unfinished
        self.transport.abort()

    def shutdown(self) -> None:
        """The server is stopping: a request under way gets `stop_cutoff_s` to end by itself."""
        super().shutdown()
        if self.cycle is not None and not self.cycle.response_complete and self._stop_timer is None:
            self._stop_timer = self.loop.call_later(self.stop_cutoff_s, self._cut_off)

    def _cut_off(self) -> None:
        self._stop_timer = None
        if not self._stopping.done():
            self._stopping.set_result(None)

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse (a bad Content-Length, chunk size or request line): the OpenAI
        error shape instead of uvicorn's plain text."""
        self._reject(400, "Bad Request", f"malformed HTTP request: {msg}", code="invalid_http_request")

    def _arm_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _disarm_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _disarm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        # A keep-alive connection idle between requests is the keep-alive timeout's business.
        if self._head_bytes or self.cycle is None:
            self._reject(408, "Request Timeout", f"request head not received within {self.head_timeout_s:g} s")

    def _body_too_slow(self) -> None:
        self._body_deadline = None
        if self.cycle is not None and self.cycle.response_started:  # answered early (e.g. 413): just close
            self._rejected = True
            self.transport.close()
        else:
            self._reject(408, "Request Timeout", f"request body not received within {self.body_timeout_s:g} s",
                         code="request_timeout")

    def _reject(self, status: int, reason: str, message: str, code: str = "request_head_rejected") -> None:
        self._rejected = True
        self._disarm_deadline()
        self._disarm_body_deadline()
        if not self.transport.is_closing():
            self.transport.write(_reply(status, reason, message, code, self._request_id()))
            self.transport.close()

    def _request_id(self) -> str:
        """The request's id (`service.request_id`) from the header lines read so far."""
        sent = next((value for name, value in self.headers or () if name == HEADER.encode()), None)
        return request_id(sent.decode("latin-1") if sent is not None else None)


def guarded_protocol(max_head_bytes: int, head_timeout_s: float, body_timeout_s: float,
                     stop_cutoff_s: float = 30.0) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn should use (its `http` option), with the configured limits."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,),
                {"max_head_bytes": max_head_bytes, "head_timeout_s": head_timeout_s,
                 "body_timeout_s": body_timeout_s, "stop_cutoff_s": stop_cutoff_s})
