"""Strategies: how a public model turns a request into a reply. One module per strategy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.strategies.base import Strategy, StrategyDeps
from service.strategies.direct import DirectStrategy
from service.strategies.fusion import FusionStrategy
from service.strategies.lookahead import LookaheadStrategy
from service.strategies.thinkswitch import ThinkSwitchStrategy

# kind -> factory(public model name, config, deps); `deps` is built once by the gateway.
STRATEGIES: dict[str, Callable[[str, Any, StrategyDeps], Strategy]] = {
    "direct": lambda name, config, deps: DirectStrategy(name, config),
    "lookahead": LookaheadStrategy,
    "thinkswitch": ThinkSwitchStrategy,
    "fusion": FusionStrategy,
}


def build_strategy(public_model: str, config: Any, deps: StrategyDeps) -> Strategy:
    return STRATEGIES[config.kind](public_model, config, deps)


__all__ = ["STRATEGIES", "Strategy", "build_strategy"]
