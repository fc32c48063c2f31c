"""One handler table mapping every error to an OpenAI-shaped JSON response."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from service.api.json import json_response
from service.errors import INTERNAL_ERROR_BODY, GatewayError, error_body

log = logging.getLogger(__name__)



async def _gateway_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, GatewayError)
    return json_response(error.body(), status_code=error.status, headers=error.headers)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = f"{request.method} {request.url.path}: {error.detail}"
    body = error_body(message, "invalid_request_error")  # OpenAI's type for an unknown path too
    return json_response(body, status_code=error.status_code, headers=error.headers)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    param = ".".join(str(p) for p in first["loc"][1:]) or None
    return json_response(error_body(str(first["msg"]), "invalid_request_error", param=param), status_code=400)


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return Response(INTERNAL_ERROR_BODY, status_code=500, media_type="application/json")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
