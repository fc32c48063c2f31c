"""Strategies: how a public model turns a request into a reply. One module per strategy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.strategies.base import Strategy
from service.strategies.direct import DirectStrategy

# kind -> factory(config, deps). `deps` is the `StrategyDeps` bundle the app builds once.
STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "direct": lambda config, deps: DirectStrategy(config),
}


def build_strategy(config: Any, deps: Any) -> Strategy:
    return STRATEGIES[config.kind](config, deps)


__all__ = ["STRATEGIES", "Strategy", "build_strategy"]
