"""A client that goes away cancels the work done for it: through the server's connection-lost future,
or (under other ASGI servers) through a watcher waiting on `receive()`."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from service.api.disconnect import ClientDisconnected, unless_disconnected
from service.http_protocol import CONNECTION_LOST, SERVER_STOPPING


class Upstream:
    """Work that runs until cancelled, remembering that it was."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def run(self) -> str:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "never"


async def test_connection_lost_future_cancels_the_work() -> None:
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    upstream = Upstream()

    async def never_receive() -> dict[str, Any]:
        raise AssertionError("receive() must not be needed when the server reports lost connections")

    waiting = asyncio.ensure_future(unless_disconnected({"extensions": {CONNECTION_LOST: lost}}, never_receive,
                                                        upstream.run()))
    await upstream.started.wait()
    lost.set_result(None)
    with pytest.raises(ClientDisconnected):
        await waiting
    assert upstream.cancelled
    assert not lost._callbacks  # type: ignore[attr-defined]  # the request's callback was removed


async def test_receive_watcher_cancels_the_work_without_the_extension() -> None:
    gone = asyncio.Event()
    upstream = Upstream()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    waiting = asyncio.ensure_future(unless_disconnected({}, receive, upstream.run()))
    await upstream.started.wait()
    gone.set()
    with pytest.raises(ClientDisconnected):
        await waiting
    assert upstream.cancelled


async def test_finished_work_returns_and_leaves_no_watcher() -> None:
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def answer() -> str:
        return "ok"

    async def receive() -> dict[str, Any]:
        raise AssertionError("not called")

    assert await unless_disconnected({"extensions": {CONNECTION_LOST: lost}}, receive, answer()) == "ok"
    assert not lost._callbacks  # type: ignore[attr-defined]
    lost.set_result(None)
    with pytest.raises(ClientDisconnected):  # a request arriving on a connection already lost
        await unless_disconnected({"extensions": {CONNECTION_LOST: lost}}, receive, answer())


async def test_a_client_leaving_as_the_work_ends_does_not_cancel_what_comes_next() -> None:
    lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def answer() -> str:
        lost.set_result(None)  # the connection drops in the same loop turn the answer is ready
        return "ok"

    async def receive() -> dict[str, Any]:
        raise AssertionError("not called")

    assert await unless_disconnected({"extensions": {CONNECTION_LOST: lost}}, receive, answer()) == "ok"
    for _ in range(3):  # the loop runs the callbacks the lost connection scheduled: none may cancel this task
        await asyncio.sleep(0)


async def test_the_client_gone_and_the_shutdown_cutoff_at_once_cancel_the_work_once() -> None:
    loop = asyncio.get_running_loop()
    lost: asyncio.Future[None] = loop.create_future()
    stopping: asyncio.Future[None] = loop.create_future()
    upstream = Upstream()

    async def never_receive() -> dict[str, Any]:
        raise AssertionError("not needed")

    async def request() -> int:
        with pytest.raises(ClientDisconnected):
            await unless_disconnected({"extensions": {CONNECTION_LOST: lost, SERVER_STOPPING: stopping}},
                                      never_receive, upstream.run())
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()  # what is left would cancel the next await of the request's task

    handling = asyncio.ensure_future(request())
    await upstream.started.wait()
    lost.set_result(None)
    stopping.set_result(None)
    assert await handling == 0 and upstream.cancelled
