"""The model list (`/v1/models`, `/v1/models/{id}`); the generation endpoints are served by
`service.api.hot_path`."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from service.errors import ModelNotFound

router = APIRouter()

class ModelList:
    """The `/v1/models` body, rendered once: the public models never change while the app runs."""

    def __init__(self, names: list[str]) -> None:
        created = int(time.time())
        models = [{"id": n, "object": "model", "created": created, "owned_by": "switchyard"} for n in names]
        self.body = orjson.dumps({"object": "list", "data": models})
        self.by_id = {model["id"]: orjson.dumps(model) for model in models}


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    models: ModelList = request.app.state.model_list
    return Response(models.body, media_type="application/json")


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> Response:
    models: ModelList = request.app.state.model_list
    body = models.by_id.get(model_id)
    if body is None:
        raise ModelNotFound(f"model {model_id!r} does not exist; GET /v1/models lists the public models",
                            param="model")
    return Response(body, media_type="application/json")
