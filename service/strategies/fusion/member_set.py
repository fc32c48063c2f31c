"""The members writing one fused answer: their calls (each with a time limit, counted), and the members
dropped on failure; with `FusionStats`, the work behind the answer.

A member's refusal of the request itself (`REQUEST_FAULTS`, raised as `RequestRefused`) is no member failure:
`FusionLoop` decides what it means.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from service.errors import BackendRejected, GatewayError, UpstreamError, UpstreamTimeout
from service.strategies.fusion.members import Member, Prompt
from service.throttled_log import ThrottledLog

T = TypeVar("T")
log = logging.getLogger(__name__)
_trouble = ThrottledLog(log)  # a member failing on every request logs once per 30 s

# A member's 4xx statuses that blame the request (a prompt over its context window, messages its chat
# template refuses), not the member.
REQUEST_FAULTS = frozenset({400, 413, 422})


class RequestRefused(BackendRejected):
    """A member's refusal of the request itself (a status in `REQUEST_FAULTS`), not a member failure."""


@dataclass
class FusionStats:
    """The fusion work behind one answer, reported in `usage.fusion`."""

    steps: int = 0
    member_calls: int = 0
    selected: Counter[str] = field(default_factory=Counter)
    scoring: Counter[str] = field(default_factory=Counter)  # scoring calls by method (echo, forced)
    dropped: list[str] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    # Time some member call was under way: parallel calls (a speculative draft beside the scoring, a solo
    # answer) count once. `calls_under_way` is counted by `MemberSet.call`.
    calls_under_way: int = 0
    _closed_s: float = 0.0
    _since: float = 0.0

    def call_started(self) -> None:
        if self.calls_under_way == 0:
            self._since = time.perf_counter()
        self.calls_under_way += 1

    def call_ended(self) -> None:
        self.calls_under_way -= 1
        if self.calls_under_way == 0:
            self._closed_s += time.perf_counter() - self._since

    @property
    def upstream_s(self) -> float:
        """Upstream time so far, a call still under way included (a cancelled draft ends a loop turn later)."""
        open_s = time.perf_counter() - self._since if self.calls_under_way else 0.0
        return self._closed_s + open_s


# (member, phase) -> None; counts a backend call in the metrics.
CallObserver = Callable[[str, str], None]


class MemberSet:
    """The members still writing this answer; a member whose call fails is dropped, once."""

    def __init__(self, members: list[Member], timeout_s: float, stats: FusionStats,
                 observe: CallObserver) -> None:
        self.active = list(members)
        self.prompts: dict[str, Prompt] = {}  # filled once the members have rendered the request
        self.timeout_s = timeout_s
        self.stats = stats
        self.observe = observe
        self.errors: list[GatewayError] = []
        self.on_drop: list[Callable[[Member], object]] = []

    async def call(self, member: Member, phase: str, work: Awaitable[T], *, solo: bool = False) -> T | None:
        """Await one member call; on failure or timeout drop the member and return None. A refusal of the
        request itself is raised instead, as `RequestRefused`.

        A `solo` call (a whole answer the member writes alone) has no per-call limit, only the backend's
        own `timeouts.total_s`, and its failure loses that answer but keeps the member.
        """
        self.stats.member_calls += 1
        self.observe(member.backend, phase)
        self.stats.call_started()
        try:
            if solo:
                return await work
            async with asyncio.timeout(self.timeout_s):
                return await work
        except GatewayError as error:
            if isinstance(error, BackendRejected) and error.status in REQUEST_FAULTS and not solo:
                raise RequestRefused(error.status, error.message, param=error.param, code=error.code) from error
            failure = error
        except TimeoutError:
            failure = UpstreamTimeout(f"fusion member {member.backend!r} timed out")
        except Exception as error:  # a reply that is not what vLLM sends (a list for an object, a field missing)
            failure = UpstreamError(f"fusion member {member.backend!r} sent a malformed reply: {error!r}")
        finally:
            self.stats.call_ended()
        if solo:
            _trouble.warning("fusion member %s could not answer alone: %s", member.backend, failure.message,
                             key=member.backend)
        else:
            self.drop(member, failure)
        return None

    def drop(self, member: Member, error: GatewayError) -> None:
        if member in self.active:
            self.active.remove(member)
            self.stats.dropped.append(member.backend)
            self.errors.append(error)
            _trouble.warning("fusion member %s dropped for the rest of the answer: %s", member.backend,
                             error.message, key=member.backend)
            for listener in self.on_drop:
                listener(member)

    def check_alive(self) -> None:
        """Raise when no member is left: the members' own error when they all failed alike (a 429 or 503
        stays one, for the client to retry; timeouts a 504), else a 502 naming the last."""
        if not self.active:
            last = self.errors[-1] if self.errors else None
            message = f"every fusion member failed (last: {last.message if last else 'none'})"
            if last is None or any((type(e), e.status) != (type(last), last.status) for e in self.errors):
                raise UpstreamError(message)
            soonest = min(self.errors, key=lambda e: int(e.headers.get("Retry-After", "0")))  # the first to retry
            raise soonest.renamed(message)

    async def gather(self, phase: str, make: Callable[[Member], Awaitable[T]]) -> dict[str, T]:
        """Run one call per active member in parallel; the results of those that answered. When one call
        raises, the others are cancelled."""
        members = list(self.active)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.call(m, phase, make(m))) for m in members]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        results = [task.result() for task in tasks]
        self.check_alive()
        return {m.backend: r for m, r in zip(members, results, strict=True) if r is not None}
