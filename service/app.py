"""The app factory: `create_app(settings)` builds the ASGI app around one `Gateway`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from service import __version__
from service.api import openai, ops
from service.api.deps import ApiKeyCheck
from service.api.errors import install_error_handlers
from service.api.hot_path import HotPath
from service.api.openai import ModelList
from service.config import Settings
from service.gateway import Gateway
from service.metrics import Metrics

ROUTERS = (openai.router, ops.router)


def create_app(settings: Settings, *, metrics: Metrics | None = None, gateway: Gateway | None = None,
               freeze_heap: bool = False) -> HotPath:
    """Build the app: the request path (`HotPath`) in front of FastAPI, which serves everything else; the
    gateway (clients, pools, models) starts and stops with the app's lifespan.

    `freeze_heap` (for a process that serves one app) exempts everything alive once the gateway has
    started from the cyclic garbage collector: a router's libraries and weights are some 400,000
    objects, and one full collection over them stalls the event loop for ~200 ms.
    """
    gateway = gateway or Gateway(settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        if freeze_heap:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await gateway.close()

    auth = ApiKeyCheck(settings.auth.api_key_hashes, settings.auth.public_paths)
    app = FastAPI(title="Switchyard", version=__version__, lifespan=lifespan, openapi_url=None,
                  docs_url=None, redoc_url=None, dependencies=[Depends(auth)])
    app.state.gateway = gateway
    app.state.model_list = ModelList([m.name for m in settings.models])
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return HotPath(app, gateway, auth)
