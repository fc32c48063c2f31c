from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.harness import GatewayServer, sims

from .live import SHIPPED_CONFIG, shipped_gateway
from .tools import K8S, OVERLAYS, kustomize

Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def rendered() -> dict[str, Objects]:
    """Every overlay, built once per session: overlay name -> its objects."""
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="module")
def shipped() -> Iterator[GatewayServer]:
    """A running gateway with the shipped configuration, its backends simulated."""
    models = [b["model"] for b in yaml.safe_load(SHIPPED_CONFIG.read_text())["backends"]]
    with sims(*models) as processes, shipped_gateway({p.model: p for p in processes}) as server:
        yield server
