"""The app factory: the lifespan starts the gateway and, for a serving process, freezes the start-up heap."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from service.app import create_app
from service.config import parse_settings
from tests.harness import direct_config, free_port


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test process collects as usual


@pytest.mark.parametrize("freeze_heap", [False, True])
async def test_the_start_up_heap_is_frozen_only_when_asked(unfrozen: None, freeze_heap: bool) -> None:
    settings = parse_settings(direct_config({"m": [f"http://127.0.0.1:{free_port()}"]}))
    app = create_app(settings, freeze_heap=freeze_heap)
    fastapi = app.app
    async with fastapi.router.lifespan_context(fastapi):  # type: ignore[attr-defined]
        assert fastapi.state.gateway.strategies  # started
        assert (gc.get_freeze_count() > 0) == freeze_heap
