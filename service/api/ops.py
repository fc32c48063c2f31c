"""Operational endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import get_gateway
from service.api.json import json_response
from service.gateway import Gateway

router = APIRouter()
GatewayDep = Annotated[Gateway, Depends(get_gateway)]


@router.get("/health")
async def health() -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


@router.get("/ready")
async def ready(gateway: GatewayDep) -> Response:
    """Readiness: some public model has a backend with an available replica, so this process can serve. The
    body says which models can; one backend down must not take the others' traffic out of the Service."""
    models = gateway.readiness()
    is_ready = any(models.values())
    return json_response({"ready": is_ready, "models": models}, status_code=200 if is_ready else 503)


@router.get("/metrics")
async def metrics(gateway: GatewayDep) -> Response:
    return Response(gateway.metrics.render(), media_type=CONTENT_TYPE_LATEST)
