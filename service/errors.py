"""The gateway's error tree, mapped once to OpenAI-shaped responses by `service.api.errors`.

    GatewayError                       status  type (OpenAI's: invalid_request_error for every client error)
    ├── InvalidRequest                 400     invalid_request_error (param names the field)
    ├── AuthenticationFailed           401     invalid_request_error (code invalid_api_key)
    ├── ModelNotFound                  404     invalid_request_error (code model_not_found)
    ├── MethodNotAllowed               405     invalid_request_error
    ├── PayloadTooLarge                413     invalid_request_error
    ├── UnsupportedMediaType           415     invalid_request_error
    ├── Saturated                      429     rate_limit_error
    ├── BackendRejected                4xx     as the backend's status (the request as the client sent it)
    ├── ServerStopping                 503     service_unavailable (this replica is shutting down)
    ├── Overloaded                     503     service_unavailable (this replica serves all it takes)
    ├── AnswerTooLarge                 502     upstream_error (not retried: every replica would answer alike)
    ├── AnswerTooSlow                  504     timeout_error (not retried: every replica would take as long)
    └── UpstreamError                  502     upstream_error
        ├── NoHealthyReplica           503     service_unavailable
        └── UpstreamTimeout            504     timeout_error
"""

from __future__ import annotations

import math
from typing import Any

import orjson


class GatewayError(Exception):
    status = 500
    type = "internal_error"
    code: str | None = None
    headers: dict[str, str] = {}  # sent with the error response (read-only; an instance may set its own)
    backend = ""  # the backend whose failure this is, where one is (the request's metrics name it)

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, param=self.param, code=self.code)

    def renamed(self, message: str) -> GatewayError:
        """The same error (status, type, code, headers) with another message."""
        error = type(self).__new__(type(self))  # not copy.copy: that calls __init__ with args alone
        error.__dict__.update(self.__dict__)
        error.message = message
        error.args = (message,)
        return error


class InvalidRequest(GatewayError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class AuthenticationFailed(GatewayError):
    status, type, code = 401, "invalid_request_error", "invalid_api_key"
    headers = {"WWW-Authenticate": "Bearer"}


class ModelNotFound(GatewayError):
    status, type, code = 404, "invalid_request_error", "model_not_found"


class MethodNotAllowed(GatewayError):
    status, type, code = 405, "invalid_request_error", "method_not_allowed"
    headers = {"Allow": "POST"}  # raised for the POST-only generation endpoints


class PayloadTooLarge(GatewayError):
    status, type, code = 413, "invalid_request_error", "payload_too_large"


class UnsupportedMediaType(GatewayError):
    status, type, code = 415, "invalid_request_error", "unsupported_media_type"


class Saturated(GatewayError):
    status, type, code = 429, "rate_limit_error", "backends_saturated"
    headers = {"Retry-After": "1"}  # queues drain within seconds


class BackendRejected(GatewayError):
    """A backend refused the request as the client sent it (a 4xx, e.g. a prompt over the context window);
    the client gets the backend's status and message."""

    code = "backend_rejected"

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.status = status
        self.type = _TYPE_OF_STATUS.get(status, "invalid_request_error")

    @classmethod
    def of(cls, backend: str, status: int, raw: bytes) -> BackendRejected:
        """From a backend's 4xx body (any shape `relayed_error` reads)."""
        error = relayed_error(status, raw)
        return cls(status, f"backend {backend!r} rejected the request: {error['message']}", param=error["param"])


class UpstreamError(GatewayError):
    status, type, code = 502, "upstream_error", "bad_gateway"


class NoHealthyReplica(UpstreamError):
    status, type, code = 503, "service_unavailable", "no_healthy_replica"

    def __init__(self, message: str, *, retry_after_s: float = 5.0) -> None:
        """`retry_after_s`: when a replica may serve again (its cooldown, then a passing health check)."""
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class ServerStopping(GatewayError):
    """This gateway replica is shutting down; another one answers a retry."""

    status, type, code = 503, "service_unavailable", "server_shutting_down"
    headers = {"Retry-After": "1"}


class Overloaded(GatewayError):
    """This gateway replica is serving all the requests (or request bytes) it takes at once."""

    status, type, code = 503, "service_unavailable", "gateway_overloaded"
    headers = {"Retry-After": "1"}


class AnswerTooLarge(GatewayError):
    """A buffered answer larger than `dispatch.max_response_bytes`: the request's doing, not the replica's. It
    tells OpenAI's clients, which retry a 5xx, that asking again would only generate the answer again."""

    status, type, code = 502, "upstream_error", "answer_too_large"
    headers = {"x-should-retry": "false"}


class UpstreamTimeout(UpstreamError):
    status, type, code = 504, "timeout_error", "upstream_timeout"


class AnswerTooSlow(GatewayError):
    """A buffered answer unfinished at the backend's `total_s`, on a replica seen generating since it was sent,
    lately, with no queue (`Replica.generating_since`), at a pace at which its token budget needs at least a
    quarter of that limit, or an unmeasured one (`Replica.could_run_long`): the request's doing, not the
    replica's. Another replica would take as long: the gateway does not retry it, and tells OpenAI's clients,
    which retry a 5xx, not to either."""

    status, type, code = 504, "timeout_error", "upstream_timeout"
    headers = {"x-should-retry": "false"}


def error_body(message: str, type_: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


INTERNAL_ERROR_BODY = orjson.dumps(error_body("internal gateway error", "internal_error"))

_TYPE_OF_STATUS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "invalid_request_error", 422: "invalid_request_error",
                   429: "rate_limit_error"}
# The status each error type stands for in a stream's error event (`sse.stream_error_status`), the other way.
STATUS_OF_TYPE = {"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
                  "not_found_error": 404, "rate_limit_error": 429, "internal_error": 500,
                  "upstream_error": 502, "service_unavailable": 503, "timeout_error": 504}


MAX_QUOTED = 1_000  # characters of a backend's error body that is not JSON (an HTML page, say) put in a message


def relayed_error_body(status: int, raw: bytes) -> bytes:
    """A backend's 4xx body in the OpenAI shape, its message kept (vLLM's own has an integer `code` and
    types like `BadRequestError`; older versions put the fields at the top level)."""
    return orjson.dumps({"error": relayed_error(status, raw)})


def relayed_error(status: int, raw: bytes) -> dict[str, Any]:
    """The `error` object of `relayed_error_body`. A body that is not JSON is quoted up to `MAX_QUOTED`
    characters; one that is JSON cut short (only its start was read) is not quoted."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace")
        body = {} if text.lstrip().startswith(("{", "[")) else text[:MAX_QUOTED]
    if isinstance(body, str):
        body = {"message": body}
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):  # a shape no server sends (a list, a number): nothing of it is quoted
        error = {}
    message = error.get("message") or error.get("detail")  # `detail`: the web framework's own errors
    code = error.get("code")
    param = error.get("param")
    return error_body(
        message if isinstance(message, str) and message else f"the backend answered {status}",
        _TYPE_OF_STATUS.get(status, "invalid_request_error"),
        param=param if isinstance(param, str) else None,
        code=str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
    )["error"]


def sse_error_event(error: GatewayError) -> bytes:
    """The event that ends a stream which failed after it had started, followed by `[DONE]`."""
    return b"data: " + orjson.dumps(error.body()) + b"\n\ndata: [DONE]\n\n"
