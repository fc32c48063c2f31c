"""Batched inference off the event loop: batches grow while a batch runs, and every failure reaches every
waiting caller (none is left hanging)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from service.inference import BatchedInference, InferenceBusy


class GatedModel:
    """Upper-cases its queries; the first batch waits until `release` is set, so others queue behind it."""

    def __init__(self, rows: Callable[[list[str]], list[str]] = lambda qs: [q.upper() for q in qs]) -> None:
        self.rows = rows
        self.started = threading.Event()
        self.release = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, queries: list[str]) -> list[str]:
        self.batches.append(queries)
        self.started.set()
        self.release.wait(10)
        return self.rows(queries)


async def queue_behind_a_running_batch(infer: BatchedInference, model: GatedModel,
                                       queries: list[str]) -> list[asyncio.Task[str]]:
    first = asyncio.ensure_future(infer("first"))
    await asyncio.to_thread(model.started.wait, 10)
    waiting = [asyncio.ensure_future(infer(q)) for q in queries]
    await asyncio.sleep(0)  # let them enqueue
    model.release.set()
    return [first, *waiting]


async def test_queries_that_arrive_during_a_batch_form_the_next_one() -> None:
    model = GatedModel()
    infer = BatchedInference(model, max_batch=2)
    tasks = await queue_behind_a_running_batch(infer, model, ["a", "b", "c"])
    assert await asyncio.gather(*tasks) == ["FIRST", "A", "B", "C"]
    assert model.batches == [["first"], ["a", "b"], ["c"]]
    infer.close()


@pytest.mark.parametrize(("rows", "error"), [
    (lambda qs: qs[:-1], "2 output rows for 3 queries"),  # one row short
    (lambda qs: None, "NoneType"),  # not a sequence at all
    (lambda qs: 1 / 0, "division by zero"),  # the model raised
])
async def test_a_bad_batch_fails_every_caller_and_the_next_batch_works(
        rows: Callable[[list[str]], list[str]], error: str) -> None:
    model = GatedModel(rows)
    infer = BatchedInference(model, max_batch=8, name="m")
    model.release.set()
    async with asyncio.timeout(10):  # a caller left waiting fails the test instead of hanging it
        results = await asyncio.gather(*(infer(q) for q in ("a", "b", "c")), return_exceptions=True)
    assert all(isinstance(r, Exception) and error in str(r) for r in results), results
    model.rows = lambda qs: [q.upper() for q in qs]
    assert await infer("d") == "D"
    infer.close()


async def test_a_cancelled_caller_leaves_the_batch_to_the_others() -> None:
    model = GatedModel()
    infer = BatchedInference(model, max_batch=8)
    first = asyncio.ensure_future(infer("first"))
    await asyncio.to_thread(model.started.wait, 10)
    gone, stays = asyncio.ensure_future(infer("gone")), asyncio.ensure_future(infer("stays"))
    await asyncio.sleep(0)
    gone.cancel()
    model.release.set()
    assert await first == "FIRST" and await stays == "STAYS"
    assert gone.cancelled()
    assert model.batches == [["first"], ["stays"]]  # the query of the caller that left was never run
    infer.close()


async def test_a_full_queue_refuses_at_once() -> None:
    model = GatedModel()
    infer = BatchedInference(model, max_batch=8, max_pending=2)
    first = asyncio.ensure_future(infer("first"))
    await asyncio.to_thread(model.started.wait, 10)  # running: the queue is empty again
    waiting = [asyncio.ensure_future(infer(q)) for q in ("a", "b")]
    await asyncio.sleep(0)
    with pytest.raises(InferenceBusy):
        await infer("c")
    model.release.set()
    assert [await t for t in (first, *waiting)] == ["FIRST", "A", "B"]
    infer.close()


async def test_callers_that_left_do_not_fill_the_queue() -> None:
    model = GatedModel()
    infer = BatchedInference(model, max_batch=8, max_pending=2)
    first = asyncio.ensure_future(infer("first"))
    await asyncio.to_thread(model.started.wait, 10)
    gone = [asyncio.ensure_future(infer(q)) for q in ("a", "b")]
    await asyncio.sleep(0)
    for task in gone:
        task.cancel()
    await asyncio.gather(*gone, return_exceptions=True)
    late = asyncio.ensure_future(infer("late"))  # the queue is full of callers that left: room is made
    await asyncio.sleep(0)
    model.release.set()
    assert [await first, await late] == ["FIRST", "LATE"]
    infer.close()
