"""Request-scoped access to the gateway, authentication and bounded body reading."""

from __future__ import annotations

import hashlib

from fastapi import Request

from service.errors import AuthenticationFailed, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from service.gateway import Gateway


async def get_gateway(request: Request) -> Gateway:
    # async: a plain def would be run in a worker thread on every request
    gateway: Gateway = request.app.state.gateway
    return gateway


class ApiKeyCheck:
    """`Authorization: Bearer KEY`, compared by SHA-256 against the configured hashes."""

    def __init__(self, key_hashes: list[str], public_paths: list[str]) -> None:
        self.hashes = frozenset(h.removeprefix("sha256:") for h in key_hashes)
        self.public_paths = frozenset(public_paths)

    async def __call__(self, request: Request) -> None:
        if not self.hashes or request.url.path in self.public_paths:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'")
        if hashlib.sha256(key.strip().encode()).hexdigest() not in self.hashes:
            raise AuthenticationFailed("invalid API key")


async def read_json_body(request: Request, limit: int) -> bytes:
    """The raw request body, refused early when it is too large or not JSON."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"Content-Type must be application/json, not {content_type!r}")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("Content-Length header is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
