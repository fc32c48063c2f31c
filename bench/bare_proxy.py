"""The floor of a Python proxy: an ASGI function that forwards each POST to one upstream with aiohttp.

No validation, routing, metrics or error handling: the same server (uvicorn with httptools and uvloop)
and client library as Switchyard, and nothing else. `bench/compare.py` runs it as target `bare-asgi`:

    UPSTREAM=http://127.0.0.1:8001 uvicorn bench.bare_proxy:app --http httptools --loop uvloop
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:8001")
_session: aiohttp.ClientSession | None = None


async def _lifespan(receive: Any, send: Any) -> None:
    global _session
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _session is not None:
                await _session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    assert _session is not None
    async with _session.request(scope["method"], UPSTREAM + scope["path"], data=body or None,
                                headers={"Content-Type": "application/json"}) as upstream:
        headers = [(b"content-type", upstream.headers.get("content-type", "application/json").encode())]
        await send({"type": "http.response.start", "status": upstream.status, "headers": headers})
        async for chunk in upstream.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
