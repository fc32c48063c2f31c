"""The OpenAI-compatible endpoints: chat completions, completions and the model list."""

from __future__ import annotations

import time
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from service.api.deps import get_gateway, read_json_body
from service.api.json import json_response
from service.api.replies import ClientDisconnected, RequestRecorder, to_response, unless_disconnected
from service.errors import GatewayError
from service.gateway import Gateway, Route
from service.types import Endpoint, GatewayRequest
from service.validation import validate_request

router = APIRouter()
GatewayDep = Annotated[Gateway, Depends(get_gateway)]

# Status nginx uses for "client closed request": recorded, never sent.
CLIENT_CLOSED = 499


async def _parse(endpoint: Endpoint | None, request: Request, gateway: Gateway) -> tuple[GatewayRequest, Route]:
    """Read, validate and resolve a request; `endpoint` None takes chat or completions from the body."""
    raw = await read_json_body(request, gateway.settings.server.max_body_bytes)
    parsed = validate_request(endpoint, raw, gateway.limits)
    route = gateway.resolve(parsed.public_model)
    return GatewayRequest(
        endpoint=parsed.endpoint, public_model=route.public_model, body=parsed.body, stream=parsed.stream,
        tradeoff=parsed.tradeoff if parsed.tradeoff is not None else route.tradeoff,
    ), route


async def _serve(endpoint: Endpoint, request: Request, gateway: Gateway) -> Response:
    gateway_request, route = await _parse(endpoint, request, gateway)
    recorder = RequestRecorder(gateway.metrics, route.public_model)
    try:
        reply = await unless_disconnected(request, route.strategy.respond(gateway_request, gateway.dispatcher))
    except GatewayError as error:
        recorder.finish(error.status, "", 0.0)
        raise
    except ClientDisconnected:
        recorder.finish(CLIENT_CLOSED, "", 0.0)
        return Response(status_code=CLIENT_CLOSED)
    return to_response(reply, recorder)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request, gateway: GatewayDep) -> Response:
    return await _serve("chat", request, gateway)


@router.post("/v1/completions")
async def completions(request: Request, gateway: GatewayDep) -> Response:
    return await _serve("completions", request, gateway)


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


@router.post("/v1/route")
async def route(request: Request, gateway: GatewayDep) -> Response:
    """The decision for a chat or completion body, with every candidate's score, without generating."""
    gateway_request, resolved = await _parse(None, request, gateway)
    decision = await resolved.strategy.decide(gateway_request)
    return json_response({
        "model": resolved.public_model, "strategy": decision.strategy, "backend": decision.backend,
        "reason": decision.reason, "cache": decision.cache, "scores": decision.scores,
        "headers": decision.headers,
    })
