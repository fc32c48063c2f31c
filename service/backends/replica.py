"""One vLLM replica as the gateway sees it: health, circuit breaker and load."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

QUEUE_WEIGHT = 2.0  # a queued request counts thrice: it is waiting for capacity, not using it
KV_PRESSURE_START = 0.9  # above this KV-cache use the engine is close to preempting requests
KV_PRESSURE_WEIGHT = 10.0  # penalty (in requests) at a full KV cache
MAX_COOLDOWN_FACTOR = 8  # ejections in a row double the cooldown, up to this many times the configured one
# An answer counts as able to run long when its token budget, at the engine's measured time per token, needs at
# least this share of the time limit: the pace varies with the batch, and prefill adds to it.
LONG_ANSWER_SHARE = 0.25


@dataclass(slots=True)
class ScrapedLoad:
    """Load read from the replica's `/metrics` (vLLM engine gauges)."""

    waiting: float = 0.0
    running: float = 0.0
    kv_cache_usage: float = 0.0
    generated_tokens: float = 0.0  # a counter: it rises while the engine generates
    # The inter-token latency histogram's sum and count: their rises give the seconds per token of one answer.
    token_gap_seconds: float = 0.0
    token_gaps: float = 0.0


@dataclass(frozen=True, slots=True)
class Sent:
    """When a request was sent to a replica, and the inter-token latency's sum and count its engine had then."""

    at: float
    token_gap_seconds: float
    token_gaps: float


@dataclass(slots=True)
class Replica:
    backend: str
    url: str  # base URL without a trailing slash, e.g. http://10.0.0.1:8000
    healthy: bool = True  # optimistic until the first check says otherwise
    in_flight: int = 0
    load: ScrapedLoad = field(default_factory=ScrapedLoad)
    consecutive_failures: int = 0  # failed requests in a row (circuit breaker)
    failed_checks: int = 0  # failed health checks in a row
    ejected_until: float = 0.0
    # Ejected and not yet proven since: after the cooldown it takes one request at a time while another
    # replica can serve (`ReplicaPool.pick`), and its first failure ejects it again, for twice as long.
    probation: bool = False
    ejections: int = 0  # ejections since the last success
    removed: bool = False  # gone from the pool (discovery); requests under way on it still finish
    # Monotonic times from its scrapes: the last one; the start and the end of the last interval between two
    # scrapes in which the generated-token counter rose; the last scrape that saw a queue.
    scraped_at: float = 0.0
    generating_from: float = 0.0
    generating_to: float = 0.0
    queued_at: float = 0.0

    def available(self, now: float | None = None) -> bool:
        """Healthy and not ejected by the circuit breaker."""
        return self.healthy and (now or time.monotonic()) >= self.ejected_until

    def scrapable(self) -> bool:
        """Whether its `/metrics` is worth reading: healthy, or ejected by the breaker while its health checks
        pass (its engine's progress then stays known, so an answer still running on it is not taken for stuck)."""
        return self.healthy or not self.failed_checks

    def take_load(self, load: ScrapedLoad, now: float, max_gap_s: float = math.inf) -> None:
        """A new scrape's load, taken at `now`. A rise of the token counter dates the engine's generating to the
        interval since the last scrape, unless that is longer than `max_gap_s` (scrapes failed, or were paused):
        then, as the first scrape, it is only a baseline."""
        # a counter that fell was restarted
        if (self.scraped_at and now - self.scraped_at <= max_gap_s
                and load.generated_tokens > self.load.generated_tokens):
            self.generating_from, self.generating_to = self.scraped_at, now
        if load.waiting:
            self.queued_at = now
        self.scraped_at = now
        self.load = load

    def sent(self, now: float) -> Sent:
        """A request's send to this replica at `now`, with the engine's token timing as last scraped."""
        return Sent(now, self.load.token_gap_seconds, self.load.token_gaps)

    def generating_since(self, sent: Sent, now: float, fresh_s: float) -> bool:
        """Whether the scrapes saw the engine generate after `sent`, lately (the last rise at most `fresh_s`
        before `now`), and queue nothing since: a request sent then that has not finished may be generating a
        long answer (it is not waiting its turn, and the engine is not frozen)."""
        return (self.generating_from >= sent.at > self.queued_at
                and now - self.generating_to <= fresh_s)

    def could_run_long(self, sent: Sent, max_tokens: int | None, limit_s: float) -> bool:
        """Whether an answer of up to `max_tokens` tokens (None: up to the context) could take `limit_s` at the
        time per token the engine was measured at since `sent` (or could be, where it was not measured); one
        that could not, yet has not finished, is stuck rather than long."""
        gaps = self.load.token_gaps - sent.token_gaps
        seconds = self.load.token_gap_seconds - sent.token_gap_seconds
        if max_tokens is None or gaps <= 0 or seconds < 0:  # no budget, or no timing (a restart resets it)
            return True
        return max_tokens * seconds / gaps >= limit_s * LONG_ANSWER_SHARE

    def saturated(self, queue_limit: int) -> bool:
        return self.load.waiting >= queue_limit > 0

    def load_score(self) -> float:
        """Lower is better; see README "Dispatch" for the rule.

        The gateway's own in-flight count is exact and fresh; the scrape is up to one interval old but
        also sees traffic from other gateways. Take the larger of the two views of active work, then
        penalise a queue (requests the engine could not schedule) and a nearly full KV cache.
        """
        active = max(float(self.in_flight), self.load.running + self.load.waiting)
        kv_pressure = max(0.0, self.load.kv_cache_usage - KV_PRESSURE_START) / (1 - KV_PRESSURE_START)
        return active + QUEUE_WEIGHT * self.load.waiting + KV_PRESSURE_WEIGHT * kv_pressure

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.probation = False
        self.ejections = 0

    def record_failure(self, threshold: int, cooldown_s: float) -> float:
        """Count a failure; return how many seconds it ejects the replica for, 0 when it does not: it ejects on
        the `threshold`-th in a row, or the first on probation. The cooldown doubles with each ejection before
        a success (up to 8x)."""
        self.consecutive_failures += 1
        now = time.monotonic()
        if (self.probation or self.consecutive_failures >= threshold) and now >= self.ejected_until:
            self.ejections += 1
            ejected_for = cooldown_s * min(2 ** (self.ejections - 1), MAX_COOLDOWN_FACTOR)
            self.ejected_until = now + ejected_for
            self.healthy = False
            self.probation = True
            return ejected_for
        return 0.0
