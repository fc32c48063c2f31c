"""Learned decision models (routers, reasoning-mode switcher), their training and evaluation.

Nothing here knows about HTTP or imports `service`. The gateway's entry point is `load_router`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from router_models.base import Router


def load_router(path: str | Path, threads: int | None = None) -> Router:
    """Load a router artifact directory (any kind): `.kind`, `.candidates`, `.version`, `.score(queries)`."""
    from router_models.registry import load_router as load

    return load(path, threads)


__all__ = ["load_router"]
