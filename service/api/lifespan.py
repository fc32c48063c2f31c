"""The server's lifespan: the gateway starts with the server and closes with it.

A start that fails on the user's own config or model artifacts (`ConfigError`) is reported in one line
that names the model and path, without a traceback, and the server exits; any other failure keeps its
traceback.
"""

from __future__ import annotations

import gc
import traceback

from starlette.types import Receive, Scope, Send

from service.config import ConfigError
from service.gateway import Gateway


class GatewayLifespan:
    """ASGI handler of the `lifespan` scope.

    `freeze_heap` (for a process that serves one app) exempts everything alive once the gateway has
    started from the cyclic garbage collector: a router's libraries and weights are some 400,000
    objects, and one full collection over them stalls the event loop for ~200 ms.
    """

    def __init__(self, gateway: Gateway, *, freeze_heap: bool = False) -> None:
        self.gateway = gateway
        self.freeze_heap = freeze_heap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.gateway.start()
        except ConfigError as error:
            await self.gateway.close()
            await send({"type": "lifespan.startup.failed", "message": f"switchyard serve: {error}"})
            return
        except BaseException:
            await self.gateway.close()
            await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
            raise
        if self.freeze_heap:
            gc.collect()
            gc.freeze()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self.gateway.close()
        except BaseException:
            await send({"type": "lifespan.shutdown.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})
