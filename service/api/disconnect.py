"""A request's work, cancelled when its client goes away or the server reaches its shutdown cutoff."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive, Scope

from service.errors import ServerStopping
from service.http_protocol import CONNECTION_LOST, SERVER_STOPPING

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the reply was done; the upstream work was cancelled."""


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(scope: Scope, receive: Receive, work: Awaitable[T]) -> T:
    """Await `work` in this task, cancelling it (and so its upstream request) if the client disconnects
    (`ClientDisconnected`) or the server reaches its shutdown cutoff (`ServerStopping`).

    "Gone" is the server's connection-lost future (`CONNECTION_LOST` in the scope's extensions) where
    there is one; otherwise a watcher task that waits on `receive()`. The cutoff is `SERVER_STOPPING`'s.
    """
    task = asyncio.current_task()
    assert task is not None
    extensions = scope.get("extensions") or {}
    lost: asyncio.Future[None] | None = extensions.get(CONNECTION_LOST)
    stopping: asyncio.Future[None] | None = extensions.get(SERVER_STOPPING)
    gone = lost if lost is not None else asyncio.ensure_future(_wait_for_disconnect(receive))
    ends = (gone,) if stopping is None else (gone, stopping)
    if any(end.done() for end in ends):
        close = getattr(work, "close", None)  # a coroutine never started
        if close is not None:
            close()
        _raise_ended(gone)

    waiting = True

    def cancel(_: object) -> None:
        nonlocal waiting
        if waiting:  # a callback already scheduled when `work` ended must not cancel what the task does next
            waiting = False  # once: the client gone and the cutoff in one loop turn cancel it once, not twice
            task.cancel()

    for end in ends:
        end.add_done_callback(cancel)
    try:
        return await work
    except asyncio.CancelledError:
        if any(end.done() for end in ends):
            task.uncancel()
            _raise_ended(gone)
        raise
    finally:
        waiting = False
        for end in ends:
            end.remove_done_callback(cancel)
        if gone is not lost:
            gone.cancel()


def _raise_ended(gone: asyncio.Future[None]) -> None:
    if gone.done():
        raise ClientDisconnected from None
    raise ServerStopping("this gateway replica is shutting down; retry the request") from None
