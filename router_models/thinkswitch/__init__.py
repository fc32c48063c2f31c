"""ThinkSwitcher: per question, answer in short or long chain-of-thought (Liang et al., 2025).

`load_switcher(path) -> Switcher` is the gateway's entry point; its `.predict(queries)` returns the predicted
pass rates (N, 2) as (short, long), and the decision is long when ŷ_long − ŷ_short ≥ τ (`.default_tau`).
Heavy imports (torch, transformers) happen on first use, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from router_models.thinkswitch.switcher import Switcher, load_switcher

__all__ = ["Switcher", "load_switcher"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from router_models.thinkswitch import switcher

        return getattr(switcher, name)
    raise AttributeError(name)
