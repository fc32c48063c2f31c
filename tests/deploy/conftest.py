from __future__ import annotations

from typing import Any

import pytest

from .tools import K8S, OVERLAYS, kustomize

Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def rendered() -> dict[str, Objects]:
    """Every overlay, built once per session: overlay name -> its objects."""
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}
