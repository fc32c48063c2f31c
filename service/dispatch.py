"""The dispatcher: sends a decided request to the least-loaded healthy replica and relays the answer.

Retries go to another replica on connect errors, 5xx, timeouts and answers vLLM never gives (`_StatusError`),
and on a replica's refusal of the gateway itself (401/403/404), but only while nothing has been
sent to the client. Once a stream has started, a failure ends it with an error event and `[DONE]`.
A stream is relayed in whole server-sent events, so that error event never lands inside a half-sent one;
`timeouts.total_s` bounds each attempt's whole answer, streamed or not; with the retries a client waits at
most `(dispatch.retries + 1) × total_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import orjson

from service.backends.monitor import longest_scrape_gap_s
from service.backends.pool import ReplicaPool
from service.backends.replica import Replica, Sent
from service.config import Backend, Settings
from service.errors import (
    AnswerTooLarge,
    AnswerTooSlow,
    BackendRejected,
    GatewayError,
    NoHealthyReplica,
    UpstreamError,
    UpstreamTimeout,
    relayed_error,
    relayed_error_body,
    sse_error_event,
)
from service.event_stream import EventBuffer
from service.metrics import Metrics
from service.request_id import upstream_header
from service.throttled_log import ThrottledLog
from service.types import Decision, GatewayRequest, Reply
from service.upstream import (
    Response,
    ResponseTooLarge,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamConnectionError,
    bearer_header,
)

_DONE = b"data: [DONE]"
_DONE_LINE = b"\n" + _DONE
_MAX_PENDING_EVENT = 1 << 20  # bytes of one unfinished event held back; a longer one is relayed as it comes
_ERROR_BODY_BYTES = 1 << 16  # of an error answer, only this much is read: its message is at the start
_RELAYED_HEADERS = ("content-type",)
_JSON_OBJECT = re.compile(rb"\s*\{")  # how a buffered answer's body starts
_JSON_HEADER = b"Content-Type: application/json\r\n"
# A backend that answers these refuses the gateway itself (its api_key, its model name), not the client.
_REFUSALS_OF_THE_GATEWAY = (401, 403, 404)
# The answers that prove a replica's engine works, and so end its breaker's streak: vLLM's API server answers
# /tokenize and /detokenize (fusion's) itself, even while its engine fails every completion.
_ENGINE_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
_COMPLETION_DEFAULT_MAX_TOKENS = 16  # vLLM's (and OpenAI's) for /v1/completions
log = logging.getLogger(__name__)


def _answered(backend: str, status: int, body: bytes) -> str:
    """Why a backend's answer failed: its status and its own message (as text, not a bytes literal)."""
    return f"backend {backend!r} answered {status}: {relayed_error(status, body)['message'][:200]}"


@contextlib.contextmanager
def _blamed_on(backend: str) -> Iterator[None]:
    """Name `backend` on a `GatewayError` raised inside (`backend`, for the request's metrics)."""
    try:
        yield
    except GatewayError as error:
        error.backend = error.backend or backend
        raise


def _request_id_header(request_id: str) -> bytes:
    """The `X-Request-Id` line of one backend call (a suffix of its own per call), or none without an id."""
    return upstream_header(request_id) if request_id else b""


class Dispatcher:
    def __init__(self, settings: Settings, pool: ReplicaPool, client: UpstreamClient, metrics: Metrics) -> None:
        self.settings = settings
        self.pool = pool
        self.client = client
        self.metrics = metrics
        self.backends: dict[str, Backend] = {b.name: b for b in settings.backends}
        # Header lines of every call to a backend, encoded once.
        self._headers = {b.name: _JSON_HEADER + bearer_header(b.api_key) for b in settings.backends}
        self._refusals = ThrottledLog(log)
        self.max_response_bytes = settings.dispatch.max_response_bytes
        # How lately an engine must have been seen generating for a timeout to be its answer's length: two of the
        # longest gaps between a working replica's scrapes, as an engine step may outlast one.
        self._fresh_s = 2 * longest_scrape_gap_s(settings.dispatch)

    async def relay(self, request: GatewayRequest, decision: Decision) -> Reply:
        """Send the decided request to a replica of `decision.backend`; buffer or stream the answer."""
        return await self.send(decision.backend, request.path, self.encode(decision.backend, decision.body),
                               stream=request.stream, extra_headers=_request_id_header(request.request_id),
                               max_tokens=token_budget(request.path, decision.body))

    async def post_json(self, backend: str, path: str, body: dict[str, Any], *, request_id: str = "") -> Any:
        """A buffered JSON call to a backend (for strategies that compose several calls), forwarding
        `request_id` (`service.request_id`; empty: none). A 4xx answer raises `BackendRejected` with the
        backend's status and message, except 401, 403 and 404, which refuse the gateway itself: those, like
        every other failure (`send`), raise `UpstreamError`, but for an answer over
        `dispatch.max_response_bytes` (`AnswerTooLarge`)."""
        return await self.post_encoded(backend, path, self.encode(backend, body), request_id=request_id,
                                       max_tokens=token_budget(path, body))

    def encode(self, backend: str, body: dict[str, Any]) -> bytes:
        """`body` as sent to `backend` (its model name set); thread-safe, for bodies too large to encode on
        the event loop."""
        return orjson.dumps({**body, "model": self.backends[backend].model})

    async def post_encoded(self, backend: str, path: str, payload: bytes, *, request_id: str = "",
                           max_tokens: int | None = None) -> Any:
        """`post_json` of a body already `encode`d; `max_tokens`: its `token_budget`."""
        with _blamed_on(backend):
            reply = await self._send(backend, path, payload, False, _request_id_header(request_id), max_tokens)
            if reply.status != 200:  # `send` answers 200 or the backend's 4xx
                raise BackendRejected.of(backend, reply.status, reply.body)
            try:
                return orjson.loads(reply.body)
            except orjson.JSONDecodeError as error:  # a body cut short, say: that backend's failure, not a bug here
                raise UpstreamError(f"backend {backend!r} answered 200 with a body that is not JSON ({error})"
                                    ) from None

    async def send(self, backend_name: str, path: str, payload: bytes, *, stream: bool,
                   extra_headers: bytes = b"", max_tokens: int | None = None) -> Reply:
        """The answer of a replica of `backend_name`; on failure before anything was relayed, another's.
        `extra_headers`: ready-encoded header lines sent besides the backend's own; `max_tokens`: the answer's
        token budget, where known (`_failure`). A `GatewayError` raised names the backend (`backend`), for the
        request's metrics."""
        with _blamed_on(backend_name):
            return await self._send(backend_name, path, payload, stream, extra_headers, max_tokens)

    async def _send(self, backend_name: str, path: str, payload: bytes, stream: bool, extra_headers: bytes,
                    max_tokens: int | None = None) -> Reply:
        backend = self.backends[backend_name]
        settings = self.settings.dispatch
        tried: list[Replica] = []
        last_error: GatewayError | None = None
        began = time.perf_counter()  # failed attempts are time waiting on backends too, not the gateway's own
        for attempt in range(settings.retries + 1):
            try:
                replica = self.pool.pick(backend_name, exclude=tried)
            except NoHealthyReplica:
                if last_error is not None:
                    raise last_error from None
                raise
            tried.append(replica)
            if attempt:
                self.metrics.retries.labels(backend_name).inc()
            try:
                return await self._attempt(backend, replica, path, payload, stream, began, extra_headers,
                                           max_tokens)
            except UpstreamError as error:
                last_error = error
        assert last_error is not None
        raise last_error

    async def _attempt(self, backend: Backend, replica: Replica, path: str, payload: bytes,
                       stream: bool, started: float, extra_headers: bytes = b"", max_tokens: int | None = None
                       ) -> Reply:
        """One replica's answer; its `upstream_s` counts from `started` (the first attempt's start)."""
        timeouts = backend.timeouts
        loop = asyncio.get_running_loop()
        sent = replica.sent(time.monotonic()) if not stream and path in _ENGINE_PATHS else None  # `_failure`
        deadline = loop.time() + timeouts.total_s
        replica.in_flight += 1
        response: Response | None = None
        try:
            async with asyncio.timeout_at(min(loop.time() + timeouts.first_byte_s, deadline) if stream else deadline):
                response = await self.client.request(replica.url, "POST", path, payload,
                                                     self._headers[backend.name] + extra_headers,
                                                     connect_timeout_s=timeouts.connect_s)
                status = response.status
                if status >= 500 or (status < 400 and status != 200):  # vLLM answers 200 or an error
                    raise _StatusError(_answered(backend.name, status, await response.read_prefix(_ERROR_BODY_BYTES)))
                headers = {k: response.headers[k] for k in _RELAYED_HEADERS if k in response.headers}
                is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
                if status == 200 and stream != is_sse:
                    raise _StatusError(f"backend {backend.name!r} answered 200 " + (
                        "without a stream to a streamed request" if stream else "with a stream where none was asked"))
                if not stream or status != 200:
                    body = await (response.read(self.max_response_bytes) if status == 200
                                  else response.read_prefix(_ERROR_BODY_BYTES))
                    if status in _REFUSALS_OF_THE_GATEWAY:
                        raise _Refusal(f"backend {backend.name!r} refused the gateway's request "
                                       f"({status}: {relayed_error(status, body)['message']})")
                    if status >= 400:
                        body = relayed_error_body(status, body)
                        headers = {"content-type": "application/json", **_retry_after(response.headers)}
                    elif not _JSON_OBJECT.match(body):
                        raise _StatusError(f"backend {backend.name!r} answered 200 with a body that is not a "
                                           "JSON object")
                    self.client.release(response)
                    if path in _ENGINE_PATHS:
                        replica.record_success()
                    replica.in_flight -= 1
                    return Reply(status=status, headers=headers, body=body, backend=backend.name,
                                 upstream_s=time.perf_counter() - started)
        except BaseException as error:
            replica.in_flight -= 1
            if response is not None:
                self.client.release(response)  # closed unless the whole answer was read
            raise self._failure(replica, error, sent, max_tokens) from None
        reply = Reply(status=response.status, headers=headers, backend=backend.name, deadline=deadline)
        reply.release = functools.partial(self._release, response, replica, reply, started)
        reply.stream = self._relay_stream(response, replica, reply, deadline)
        return reply

    def _release(self, response: Response, replica: Replica, reply: Reply, started: float) -> None:
        """A streamed reply's `release`: the connection back to the pool (closed unless the whole answer was
        read), the replica slot freed, the reply's upstream clock stopped. It does not wait for the stream to
        be read, so a stream dropped unread frees them too."""
        self.client.release(response)
        replica.in_flight -= 1
        reply.upstream_s = time.perf_counter() - started

    def _failure(self, replica: Replica, error: BaseException, sent: Sent | None,
                 max_tokens: int | None = None) -> BaseException:
        """Classify a failed attempt, update the replica's state and return the error to raise.
        `sent`: a buffered completion's send, whose timeout may be its length's doing: so it is where the engine
        has been generating since, lately, with no queue, at a pace at which an answer of `max_tokens` could take
        that long."""
        if isinstance(error, asyncio.CancelledError | GeneratorExit | KeyboardInterrupt):
            return error
        if isinstance(error, ResponseTooLarge):  # the request's answer: another replica's would be as large
            return AnswerTooLarge(f"the answer of {replica.backend!r} is larger than the gateway buffers "
                                  f"({self.max_response_bytes} bytes, dispatch.max_response_bytes): stream it, "
                                  "or ask for less")
        if isinstance(error, UpstreamConnectError):
            kind, mapped = "connect", UpstreamError(f"cannot connect to a replica of {replica.backend!r}")
            replica.healthy = False  # passive marking: the next health check may readmit it
        elif isinstance(error, TimeoutError):
            limit_s = self.backends[replica.backend].timeouts.total_s
            if (sent is not None and replica.generating_since(sent, time.monotonic(), self._fresh_s)
                    and replica.could_run_long(sent, max_tokens, limit_s)):
                self._count_error(replica, "timeout")  # a long answer on a working engine: not the replica's fault
                return AnswerTooSlow(f"the answer of {replica.backend!r} took longer than its {limit_s:g} s "
                                     "limit: stream it, or ask for fewer tokens")
            kind, mapped = "timeout", UpstreamTimeout(f"a replica of {replica.backend!r} timed out")
        elif isinstance(error, _StatusError):
            kind, mapped = "status", UpstreamError(str(error))
        elif isinstance(error, _Refusal):  # one replica misconfigured (e.g. mid-rollout) must not take a share
            kind, mapped = "status", UpstreamError(str(error))
            self._refusals.warning("%s on %s: check its api_key and model", error, replica.url,
                                   key=replica.backend)
        elif isinstance(error, UpstreamConnectionError):
            kind, mapped = "connection", UpstreamError(f"connection to a replica of {replica.backend!r} failed")
        else:
            return error
        self._count_failure(replica, kind, mapped.message)
        return mapped

    async def _relay_stream(self, response: Response, replica: Replica, reply: Reply,
                            deadline: float) -> AsyncIterator[bytes]:
        """Yield upstream SSE bytes as whole events arrive; end a broken stream with an error event and `[DONE]`.

        Each wait for more bytes is bounded by `timeouts.first_byte_s`, the whole stream by `deadline`.
        """
        timeouts = self.backends[replica.backend].timeouts
        loop = asyncio.get_running_loop()
        events = EventBuffer()
        complete = False  # `[DONE]` relayed
        try:
            while True:
                async with asyncio.timeout_at(min(loop.time() + timeouts.first_byte_s, deadline)):
                    chunk = await response.chunk()
                if not chunk:
                    break
                ready = events.feed(chunk)
                if not ready:
                    if events.size < _MAX_PENDING_EVENT:
                        continue
                    ready = events.take()
                complete = complete or holds_done(ready)
                yield ready
            pending = events.take()
            if pending.strip() == _DONE:  # an unterminated last line; any other unfinished event is dropped
                complete, pending = True, b""
                yield _DONE + b"\n\n"
            if complete:
                replica.record_success()  # a stream succeeds when it is whole, not when its head arrives
            else:
                yield self._stream_broke(replica, "the backend closed the stream before it was complete")
        except TimeoutError:
            if loop.time() < deadline:
                yield self._stream_broke(replica)
            else:
                self._count_error(replica, "timeout")  # the whole answer's limit: no fault of the replica
                yield sse_error_event(UpstreamTimeout(
                    f"the answer of {replica.backend!r} took longer than its {timeouts.total_s:g} s limit"))
        except UpstreamConnectionError:
            yield self._stream_broke(replica)
        finally:
            reply.close()

    def _stream_broke(self, replica: Replica, message: str = "the backend stream broke off") -> bytes:
        """Count a stream that broke off, went silent or ended unfinished against its replica; the event that
        ends it."""
        self._count_failure(replica, "stream", message)
        return sse_error_event(UpstreamError(message))

    def _count_failure(self, replica: Replica, kind: str, message: str) -> None:
        """Count a failed request against its replica and its circuit breaker; log the breaker's ejection where
        it ejects it."""
        if not self._count_error(replica, kind):
            return
        settings = self.settings.dispatch
        if ejected_for := replica.record_failure(settings.breaker_failures, settings.breaker_cooldown_s):
            log.warning("replica %s of %s ejected for %.3g s after %d failed requests in a row (the last: %s)",
                        replica.url, replica.backend, ejected_for, replica.consecutive_failures, message)

    def _count_error(self, replica: Replica, kind: str) -> bool:
        """Count an error in its replica's series; False for a replica gone from the pool (discovery): its
        series were dropped and must stay so."""
        if replica.removed:
            return False
        self.metrics.upstream_errors.labels(replica.backend, replica.url, kind).inc()
        return True


def token_budget(path: str, body: Mapping[str, Any]) -> int | None:
    """The most tokens vLLM lets each answer to `body` have; None: up to the model's context. A chat reads
    `max_completion_tokens`, then `max_tokens`; a completion `max_tokens`, 16 where it is unset or null."""
    if path != "/v1/chat/completions":
        value = body.get("max_tokens")
        return value if isinstance(value, int) else _COMPLETION_DEFAULT_MAX_TOKENS
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if isinstance(value, int):
            return value
    return None


def _retry_after(headers: Mapping[str, str]) -> dict[str, str]:
    """A backend's `Retry-After` (on a 429, say), passed on to the client."""
    value = headers.get("retry-after")
    return {"retry-after": value} if value else {}


def holds_done(events: bytes) -> bool:
    """Whether whole server-sent events include `data: [DONE]` as a line of its own."""
    return events.startswith(_DONE) or _DONE_LINE in events


class _StatusError(Exception):
    """A replica answered with a 5xx status, or with something vLLM never answers (retryable)."""


class _Refusal(Exception):
    """A replica refused the gateway itself (401/403/404: its api_key or model name; retryable elsewhere)."""
