"""The model list (`/v1/models`); the generation endpoints are served by `service.api.hot_path`."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

router = APIRouter()

# Status nginx uses for "client closed request": recorded, never sent.
CLIENT_CLOSED = 499


class ModelList:
    """The `/v1/models` body, rendered once: the public models never change while the app runs."""

    def __init__(self, names: list[str]) -> None:
        created = int(time.time())
        self.body = orjson.dumps({
            "object": "list",
            "data": [{"id": n, "object": "model", "created": created, "owned_by": "switchyard"} for n in names],
        })


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    models: ModelList = request.app.state.model_list
    return Response(models.body, media_type="application/json")
