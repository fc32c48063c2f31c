"""Request-scoped access to the gateway, and authentication."""

from __future__ import annotations

import hashlib

from fastapi import Request

from service.errors import AuthenticationFailed
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
        self.check(request.url.path, request.headers.get("authorization", ""))

    def check(self, path: str, authorization: str) -> None:
        """Raise `AuthenticationFailed` unless `path` is public or `authorization` carries a known key."""
        if not self.hashes or path in self.public_paths:
            return
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'")
        if hashlib.sha256(key.strip().encode()).hexdigest() not in self.hashes:
            raise AuthenticationFailed("invalid API key")
