"""The app factory: the lifespan starts the gateway, reports a bad artifact in one line, and, for a serving
process, freezes the start-up heap."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.app import create_app
from service.config import parse_settings
from tests.harness import direct_config, free_port


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test process collects as usual


class LifespanDriver:
    """The server's side of the ASGI lifespan protocol."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> dict[str, Any]:
        self.task = asyncio.ensure_future(self.app({"type": "lifespan"}, self.to_app.get, self.from_app.put))
        await self.to_app.put({"type": "lifespan.startup"})
        return await self.from_app.get()

    async def shutdown(self) -> dict[str, Any]:
        await self.to_app.put({"type": "lifespan.shutdown"})
        return await self.from_app.get()


@pytest.mark.parametrize("freeze_heap", [False, True])
async def test_the_start_up_heap_is_frozen_only_when_asked(unfrozen: None, freeze_heap: bool) -> None:
    settings = parse_settings(direct_config({"m": [f"http://127.0.0.1:{free_port()}"]}))
    app = create_app(settings, freeze_heap=freeze_heap)
    lifespan = LifespanDriver(app)
    assert await lifespan.startup() == {"type": "lifespan.startup.complete"}
    assert app.gateway.strategies  # started
    assert (gc.get_freeze_count() > 0) == freeze_heap
    assert await lifespan.shutdown() == {"type": "lifespan.shutdown.complete"}


@pytest.mark.parametrize("kind", ["lookahead", "thinkswitch"])
async def test_a_model_without_a_usable_artifact_fails_the_start_in_one_line(tmp_path: Path, kind: str) -> None:
    broken = tmp_path / "artifact"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    config = direct_config({"m": [f"http://127.0.0.1:{free_port()}"], "n": [f"http://127.0.0.1:{free_port()}"]})
    strategy: dict[str, Any] = {"kind": kind}
    if kind == "lookahead":
        strategy.update(router=str(broken), candidates=[{"backend": "m"}, {"backend": "n"}])
    else:
        strategy.update(backend="m", thinking={"switcher": str(broken), "family": "qwen3"})
    config["models"].append({"name": "smart", "strategy": strategy})
    lifespan = LifespanDriver(create_app(parse_settings(config)))
    failed = await lifespan.startup()
    assert failed["type"] == "lifespan.startup.failed"
    assert failed["message"].startswith(f"switchyard serve: models.smart: {broken}: cannot load this ")
    assert "\n" not in failed["message"] and "Traceback" not in failed["message"]
