"""Leaf types shared by every layer: the request as the gateway sees it, decisions and replies.

Nothing here imports FastAPI or any other Switchyard module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Endpoint = Literal["chat", "completions"]
FusionVariant = Literal["cool", "cool+r"]  # Cool-Fusion, or with its rerank (`fusion` strategy)
CacheOutcome = Literal["hit", "miss", "off", "error"]


@dataclass(frozen=True, slots=True)
class GatewayRequest:
    """A validated client request. `body` is the client's JSON with unknown fields kept verbatim."""

    endpoint: Endpoint
    public_model: str
    body: dict[str, Any]
    stream: bool
    # Client's cost/quality trade-off in [0, 1] (suffix `auto:0.3` or body field `switchyard_tradeoff`); None = default.
    tradeoff: float | None = None
    variant: FusionVariant | None = None  # body field `switchyard_variant`, for `fusion`; None = the config's
    request_id: str = ""  # `service.request_id`; forwarded to the backends (empty: none sent)

    @property
    def path(self) -> str:
        return "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a request goes and how it is rewritten, as decided by a strategy."""

    backend: str
    body: dict[str, Any]
    strategy: str
    reason: str  # why this backend and body: the strategy's own word (quality, switcher, fusion, direct, ...)
    cache: CacheOutcome = "off"
    scores: dict[str, float] = field(default_factory=dict)
    # Extra response headers that explain the decision (e.g. x-switchyard-thinking).
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Reply:
    """What the gateway sends back: a buffered body or a stream of raw SSE bytes."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    backend: str = ""
    # Seconds spent waiting on backends; for a stream it grows until the stream ends.
    upstream_s: float = 0.0
    # A stream's: frees what it holds upstream (connection, replica slot); called once, by `close`. The
    # stream's own end closes the reply; code that drops a stream it never read must.
    release: Callable[[], None] | None = None
    # A stream's: the event-loop time after which relaying it to the client stops.
    deadline: float | None = None

    def close(self) -> None:
        """Free what a stream holds upstream, read or not, once (nothing for a buffered reply)."""
        release, self.release = self.release, None
        if release is not None:
            release()
