"""The app factory: `create_app(settings)` builds the ASGI app around one `Gateway`."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from service import __version__
from service.api import openai, ops
from service.api.deps import ApiKeyCheck
from service.api.errors import install_error_handlers
from service.api.hot_path import HotPath
from service.api.lifespan import GatewayLifespan
from service.api.openai import ModelList
from service.config import Settings
from service.gateway import Gateway
from service.metrics import Metrics

ROUTERS = (openai.router, ops.router)


def create_app(settings: Settings, *, metrics: Metrics | None = None, gateway: Gateway | None = None,
               freeze_heap: bool = False) -> HotPath:
    """Build the app: the request path (`HotPath`) in front of FastAPI, which serves everything else; the
    gateway (clients, pools, models) starts and stops with the server's lifespan (`GatewayLifespan`, which
    with `freeze_heap` also exempts the start-up heap from the cyclic garbage collector).
    """
    gateway = gateway or Gateway(settings, metrics)
    auth = ApiKeyCheck(settings.auth.api_key_hashes, settings.auth.public_paths)
    app = FastAPI(title="Switchyard", version=__version__, openapi_url=None, docs_url=None, redoc_url=None,
                  dependencies=[Depends(auth)])
    app.state.gateway = gateway
    app.state.model_list = ModelList([m.name for m in settings.models])
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return HotPath(app, gateway, auth, GatewayLifespan(gateway, freeze_heap=freeze_heap))
