"""Model inference off the event loop, with concurrent calls batched together.

One worker thread runs the model's batch function. Queries that arrive while a batch is running wait
for the next one, so batches grow with load and a lone request is never delayed by a batching window.

The gateway gives every model the same thread (`inference_thread`), and loads the models on it too, so their
forwards run one at a time (a slow one delays the others). Every thread that runs PyTorch brings a team of
OpenMP threads of its own, and where the process has more of them than CPUs, libgomp's idle threads barely
spin before they sleep: every parallel operation inside a forward then pays for waking them. A model loaded on
the event loop's thread and run on another thus took 1.5 times as long on 2 cores (MiniLM in bfloat16: 8.8
against 5.8 ms a question); one thread for loading and running all of them keeps one team.

At most `max_pending` queries wait: beyond that a call fails at once (`InferenceBusy`, and the strategy
falls back to its default decision), and a query whose caller went away is dropped, not run.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

BatchFn = Callable[[list[str]], Sequence[Any]]
T = TypeVar("T")


def inference_thread(name: str = "inference") -> ThreadPoolExecutor:
    """The one thread a gateway loads and runs its models on (see the module's docstring)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)


async def on_thread(executor: Executor | None, work: Callable[[], T]) -> T:
    """`work()` on `executor`'s thread, or here where there is none (a model loaded for a test, say)."""
    if executor is None:
        return work()
    return await asyncio.get_running_loop().run_in_executor(executor, work)


class InferenceBusy(Exception):
    """More queries wait for the model than `max_pending`."""


class BatchedInference:
    def __init__(self, fn: BatchFn, *, max_batch: int = 32, max_pending: int = 1024, name: str = "inference",
                 executor: Executor | None = None) -> None:
        """`executor`: the thread to run on, shared with other models (`inference_thread`); without one,
        a thread of its own."""
        self.fn = fn
        self.name = name
        self.max_batch = max_batch
        self.max_pending = max_pending
        self._owns_executor = executor is None
        self._executor = executor or inference_thread(name)
        self._pending: deque[tuple[str, asyncio.Future[Any]]] = deque()
        self._draining: asyncio.Task[None] | None = None

    async def __call__(self, query: str) -> Any:
        """The model's output row for one query."""
        if len(self._pending) >= self.max_pending:  # full: first drop the queries whose callers went away
            self._pending = deque(entry for entry in self._pending if not entry[1].done())
            if len(self._pending) >= self.max_pending:
                raise InferenceBusy(f"{self.name}: {len(self._pending)} queries already wait for the model")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((query, future))
        if self._draining is None:
            self._draining = loop.create_task(self._drain())
        return await future

    async def warm(self, query: str = "Warm-up query: what is 2 + 2?") -> None:
        """Run one query so the first real request pays no lazy initialisation."""
        await self(query)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._next_batch()
                if not batch:
                    continue
                queries = [query for query, _ in batch]
                try:
                    rows = await loop.run_in_executor(self._executor, self.fn, queries)
                    if len(rows) != len(batch):
                        raise ValueError(f"{self.name}: {len(rows)} output rows for {len(batch)} queries")
                except Exception as error:  # noqa: BLE001 - handed to every waiting caller
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():
                        future.set_result(row)
        finally:
            self._draining = None

    def _next_batch(self) -> list[tuple[str, asyncio.Future[Any]]]:
        """Up to `max_batch` waiting queries whose callers are still there."""
        batch: list[tuple[str, asyncio.Future[Any]]] = []
        while self._pending and len(batch) < self.max_batch:
            query, future = self._pending.popleft()
            if not future.done():  # a caller that went away cancelled its future
                batch.append((query, future))
        return batch

    def close(self) -> None:
        """Stop running batches (a shared executor is its owner's to shut down)."""
        if self._owns_executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
