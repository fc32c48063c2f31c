"""Model inference off the event loop, with concurrent calls batched together.

One worker thread runs the model's batch function. Queries that arrive while a batch is running wait
for the next one, so batches grow with load and a lone request is never delayed by a batching window.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

BatchFn = Callable[[list[str]], Sequence[Any]]


class BatchedInference:
    def __init__(self, fn: BatchFn, *, max_batch: int = 32, name: str = "inference") -> None:
        self.fn = fn
        self.name = name
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[tuple[str, asyncio.Future[Any]]] = []
        self._draining = False

    async def __call__(self, query: str) -> Any:
        """The model's output row for one query."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((query, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await future

    async def warm(self, query: str = "Warm-up query: what is 2 + 2?") -> None:
        """Run one query so the first real request pays no lazy initialisation."""
        await self(query)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
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
            self._draining = False

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
