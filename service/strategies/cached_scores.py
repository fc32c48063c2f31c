"""A learned model's scores of a query, computed in batches off the event loop and kept in the decision cache.

The router and the reasoning-mode switcher are both read this way: the query is normalised once (the cache key
and the model read the same text), concurrent misses share one computation, and a cached value of another
shape is computed again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from service.cache import DecisionCache
from service.cache.base import cached
from service.cache.keys import decision_key, normalise
from service.inference import BatchedInference
from service.types import CacheOutcome


def numbers_under(field: str, count: int) -> Callable[[Any], bool]:
    """Whether a stored value is `{field: [count finite numbers]}`: the `valid` of a list of scores."""

    def valid(value: Any) -> bool:
        numbers = value.get(field) if isinstance(value, dict) else None
        return isinstance(numbers, list) and len(numbers) == count and all(
            isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in numbers)

    return valid


class CachedScores:
    """`await scores(query)`: `count` floats (`to_scores` of the model's output row) and the cache outcome.

    Cache entries are `{field: [scores]}` under `decision_key(strategy, config_version, artifact_version, text)`.
    """

    def __init__(self, infer: BatchedInference, cache: DecisionCache | None, to_scores: Callable[[Any], list[float]],
                 *, field: str, count: int, strategy: str, config_version: str, artifact_version: str) -> None:
        self.infer = infer
        self.cache = cache
        self.to_scores = to_scores
        self.field = field
        self.key_prefix = (strategy, config_version, artifact_version)
        self.valid = numbers_under(field, count)

    async def __call__(self, query: str) -> tuple[list[float], CacheOutcome]:
        text = normalise(query)

        async def compute() -> dict[str, list[float]]:
            return {self.field: self.to_scores(await self.infer(text))}

        value, outcome = await cached(self.cache, decision_key(*self.key_prefix, text), compute, self.valid)
        return [float(score) for score in value[self.field]], outcome
