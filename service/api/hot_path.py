"""The request path: chat completions, completions and `/v1/route`, served straight from ASGI messages.

These endpoints carry every request, so they skip the framework's routing, dependency solving and
middleware layers (a third of the gateway's time per request at low load); every other path is passed
to the FastAPI app. Errors get the same OpenAI-shaped bodies as everywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.admission import Admission, Ticket
from service.api.deps import ApiKeyCheck
from service.api.disconnect import ClientDisconnected, unless_disconnected
from service.api.recording import CLIENT_CLOSED, ModelMetrics, RequestRecorder
from service.api.replies import JSON_CONTENT, Headers, send_body, send_error, send_reply
from service.errors import (
    INTERNAL_ERROR_BODY,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.gateway import Gateway, Route
from service.request_id import HEADER as REQUEST_ID
from service.request_id import request_id
from service.types import Endpoint, GatewayRequest
from service.validation import validate_request

log = logging.getLogger(__name__)

# path -> the endpoint it serves; None takes chat or completions from the body (`/v1/route`)
ENDPOINTS: dict[str, Endpoint | None] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/route": None,
}


class HotPath:
    """ASGI app: POSTs to `ENDPOINTS` are served here, the lifespan by `lifespan`, everything else by `app`."""

    def __init__(self, app: ASGIApp, gateway: Gateway, auth: ApiKeyCheck, lifespan: ASGIApp) -> None:
        self.app = app
        self.gateway = gateway
        self.auth = auth
        self.lifespan = lifespan
        self.max_body_bytes = gateway.settings.server.max_body_bytes
        self.model_metrics = {m.name: ModelMetrics(gateway.metrics, m.name) for m in gateway.settings.models}
        self.refused = gateway.metrics.refused
        server = gateway.settings.server
        self.admission = Admission(server.max_concurrent_requests, server.max_concurrent_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http":
            await (self.lifespan if scope["type"] == "lifespan" else self.app)(scope, receive, send)
            return
        headers = _headers(scope)
        rid = request_id(headers.get(REQUEST_ID))
        rid_header = ((REQUEST_ID_HEADER, rid.encode()),)  # on every answer, errors included
        if path not in ENDPOINTS:
            await self.app(scope, receive, _with_headers(send, rid_header))
            return
        ticket: Ticket | None = None
        try:
            try:
                ticket = self.admission.enter()
                request, route = await self._accept(scope, receive, headers, rid, ticket)
            except GatewayError as error:
                self.refused.labels(path, str(error.status)).inc()
                raise
            if path == "/v1/route":
                await self._route(request, route, send, rid_header)
            else:
                await self._serve(request, route, scope, receive, send, rid_header)
        except GatewayError as error:
            await send_error(send, error, rid_header)
        except ClientDisconnected:
            pass
        except Exception:
            log.exception("unexpected error on %s %s", scope["method"], path)
            await send_body(send, 500, INTERNAL_ERROR_BODY, (JSON_CONTENT, *rid_header))
        finally:
            if ticket is not None:
                ticket.release()

    async def _accept(self, scope: Scope, receive: Receive, headers: dict[str, str], rid: str,
                      ticket: Ticket) -> tuple[GatewayRequest, Route]:
        """The request and the public model that takes it; a `GatewayError` where it is refused first."""
        path = scope["path"]
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{scope['method']} {path}: use POST")
        self.auth.check(path, headers.get("authorization", ""))
        raw = await read_json_body(headers, receive, self.max_body_bytes, ticket.hold)
        parsed = validate_request(ENDPOINTS[path], raw, self.gateway.limits)
        route = self.gateway.resolve(parsed.public_model)
        tradeoff = parsed.tradeoff if parsed.tradeoff is not None else route.tradeoff
        return replace(parsed, public_model=route.public_model, tradeoff=tradeoff, request_id=rid), route

    async def _serve(self, request: GatewayRequest, route: Route, scope: Scope, receive: Receive, send: Send,
                     extra: Headers) -> None:
        recorder = RequestRecorder(self.model_metrics[route.public_model])
        try:
            reply = await unless_disconnected(scope, receive, route.strategy.respond(request, self.gateway.dispatcher))
        except BaseException as error:  # recorded however the request ended, re-raised to be answered
            recorder.finish(_error_status(error), getattr(error, "backend", ""), 0.0)
            raise
        await send_reply(scope, receive, send, reply, recorder, extra)

    async def _route(self, request: GatewayRequest, route: Route, send: Send, extra: Headers) -> None:
        """The decision for a chat or completion body, with every candidate's score, without generating."""
        decision = await route.strategy.decide(request)
        body = orjson.dumps({
            "model": route.public_model, "strategy": decision.strategy, "backend": decision.backend,
            "reason": decision.reason, "cache": decision.cache, "scores": decision.scores,
            "headers": decision.headers,
        })
        await send_body(send, 200, body, (JSON_CONTENT, *extra))


def _error_status(error: BaseException) -> int:
    """The status a request that failed with `error` is recorded with."""
    if isinstance(error, GatewayError):
        return error.status
    return CLIENT_CLOSED if isinstance(error, ClientDisconnected) else 500


def _with_headers(send: Send, extra: Headers) -> Send:
    """`send`, adding `extra` to the response head."""
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return sending


def _headers(scope: Scope) -> dict[str, str]:
    """The request headers this path reads, by lower-case name."""
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
            if name in _READ_HEADERS}


REQUEST_ID_HEADER = REQUEST_ID.encode()
_READ_HEADERS = (b"authorization", b"content-type", b"content-length", REQUEST_ID_HEADER)


async def read_json_body(headers: dict[str, str], receive: Receive, limit: int,
                         hold: Callable[[int], None]) -> bytes:
    """The raw request body, refused early when it is too large or not JSON (a body too slow to arrive is
    the server protocol's business: `service.http_protocol`). `hold` is told of its bytes before they are
    read: the declared length at once, a chunked body's chunk by chunk."""
    content_type = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {content_type!r}")
    declared = headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length header is not a number")
        length = int(declared)
        if length > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        hold(length)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        if declared is None:
            hold(len(chunk))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
