"""An in-process LRU decision cache with a TTL (the default: no Redis needed)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from service.cache.base import DecisionCache
from service.metrics import Metrics


class MemoryCache(DecisionCache):
    def __init__(self, metrics: Metrics, max_entries: int, ttl_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(metrics)
        self.clock = clock
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def describe(self) -> str:
        return f"in-process, at most {self.max_entries} entries"

    async def _get(self, key: str) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if self.clock() >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def _set(self, key: str, value: Any) -> None:
        self._entries[key] = (self.clock() + self.ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
