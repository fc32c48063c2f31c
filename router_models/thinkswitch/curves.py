"""Accuracy-versus-cost of a switch: the τ sweep, the fixed policies it is judged against, choosing τ.

A ROW is `{"accuracy", "mean_tokens", "long_share"}`: the mean pass rate of the mode chosen per question, the
mean generated tokens of that mode (None where the data has no token counts) and the share sent to long mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NotRequired, TypedDict

import numpy as np

from router_models.thinkswitch.data import ThinkRecord


class Row(TypedDict):
    """One policy's result; curve points also carry the τ that produced them."""

    accuracy: float
    mean_tokens: float | None
    long_share: float
    tau: NotRequired[float]


@dataclass(frozen=True)
class Outcomes:
    """Per-question pass rates and token counts of both modes, as arrays (NaN tokens where unknown)."""

    short: np.ndarray  # (N,)
    long: np.ndarray  # (N,)
    short_tokens: np.ndarray  # (N,)
    long_tokens: np.ndarray  # (N,)

    @classmethod
    def of(cls, records: Sequence[ThinkRecord]) -> Outcomes:
        def tokens(values: list[float | None]) -> np.ndarray:
            return np.array([np.nan if value is None else value for value in values], dtype=np.float64)

        return cls(
            short=np.array([r.short.pass_rate for r in records], dtype=np.float64),
            long=np.array([r.long.pass_rate for r in records], dtype=np.float64),
            short_tokens=tokens([r.short.mean_tokens for r in records]),
            long_tokens=tokens([r.long.mean_tokens for r in records]),
        )

    @property
    def has_tokens(self) -> bool:
        return bool(len(self.short)) and not (
            np.isnan(self.short_tokens).any() or np.isnan(self.long_tokens).any()
        )

    def row(self, go_long: np.ndarray) -> Row:
        """The ROW of sending the questions where `go_long` (N,) bool is set to long mode."""
        tokens = np.where(go_long, self.long_tokens, self.short_tokens)
        return {
            "accuracy": float(np.where(go_long, self.long, self.short).mean()),
            "mean_tokens": float(tokens.mean()) if self.has_tokens else None,
            "long_share": float(go_long.mean()),
        }


def baselines(outcomes: Outcomes) -> dict[str, Row]:
    """Always-short, always-long and the per-question oracle (long only where it scores higher)."""
    n = len(outcomes.short)
    return {
        "always_short": outcomes.row(np.zeros(n, dtype=bool)),
        "always_long": outcomes.row(np.ones(n, dtype=bool)),
        "oracle": outcomes.row(outcomes.long > outcomes.short),
    }


def reference(outcomes: Outcomes) -> float:
    """What the switcher is judged against: the better single mode where tokens are known (the GSM8K target),
    always-long without (the MATH one)."""
    if outcomes.has_tokens:
        return float(max(outcomes.short.mean(), outcomes.long.mean()))
    return float(outcomes.long.mean())


def random_mix(outcomes: Outcomes, long_share: float) -> Row:
    """Expected ROW of sending a random `long_share` of the questions to long mode."""
    short, long = baselines(outcomes)["always_short"], baselines(outcomes)["always_long"]
    accuracy = (1 - long_share) * short["accuracy"] + long_share * long["accuracy"]
    tokens = None
    if short["mean_tokens"] is not None and long["mean_tokens"] is not None:
        tokens = (1 - long_share) * short["mean_tokens"] + long_share * long["mean_tokens"]
    return {"accuracy": accuracy, "mean_tokens": tokens, "long_share": long_share}


def sweep(gain: np.ndarray, outcomes: Outcomes) -> list[Row]:
    """ROWs with "tau" for every distinct decision the rule `long if gain >= τ` can make, from all-short up.

    gain: (N,) predicted ŷ_long − ŷ_short. τ runs over the distinct predicted gains (plus one above the
    largest, and at least 0, where every question goes short), so no reachable point of the curve is skipped.
    """
    taus = np.unique(gain)[::-1]  # descending: long share grows along the curve
    top = max(float(taus[0]) + 1e-3, 0.0) if len(taus) else 0.0
    return [with_tau(outcomes.row(gain >= tau), float(tau)) for tau in [top, *taus]]


def with_tau(row: Row, tau: float) -> Row:
    """`row` with the τ that produced it, "tau" first."""
    return {"tau": tau, **row}


def meets_target(curve: list[Row], outcomes: Outcomes, target_drop: float) -> Row | None:
    """The cheapest curve point at most `target_drop` accuracy points below always-long (None: none is)."""
    floor = baselines(outcomes)["always_long"]["accuracy"] - target_drop / 100 - 1e-12
    feasible = [row for row in curve if row["accuracy"] >= floor]
    return min(feasible, key=lambda row: row["long_share"]) if feasible else None


def within_budget(
    curve: list[Row], outcomes: Outcomes, max_long_share: float, max_token_ratio: float
) -> list[Row]:
    """The curve points with long share ≤ `max_long_share` and, where token counts exist, mean tokens ≤
    `max_token_ratio` × always-long's (at least the all-short point). A point with τ < 0 is never one: it
    would send questions long that the switcher predicts long mode does worse on, just to spend the budget."""
    long_tokens = baselines(outcomes)["always_long"]["mean_tokens"]
    return [row for row in curve if affordable(row, long_tokens, max_long_share, max_token_ratio)] or curve[:1]


def affordable(row: Row, long_tokens: float | None, max_long_share: float, max_token_ratio: float) -> bool:
    """Whether `row` is within the budget of `within_budget`, against always-long's `long_tokens` (None:
    unknown, no token budget)."""
    if row["long_share"] > max_long_share + 1e-12 or row.get("tau", 0.0) < 0:
        return False
    tokens = row["mean_tokens"]
    return long_tokens is None or tokens is None or tokens <= max_token_ratio * long_tokens


def best_within_budget(
    curve: list[Row], outcomes: Outcomes, max_long_share: float, max_token_ratio: float
) -> Row:
    """The most accurate curve point within the budget (`within_budget`); ties go to the cheaper point."""
    candidates = within_budget(curve, outcomes, max_long_share, max_token_ratio)
    return max(candidates, key=lambda row: (round(row["accuracy"], 9), -row["long_share"]))


def spend_budget(
    curve: list[Row], outcomes: Outcomes, max_long_share: float, max_token_ratio: float
) -> Row:
    """The curve point within the budget (`within_budget`) that sends the most questions long."""
    return max(within_budget(curve, outcomes, max_long_share, max_token_ratio), key=lambda row: row["long_share"])


def above_random(curve: list[Row], outcomes: Outcomes) -> bool:
    """Whether every curve point is at least as accurate as random mixing at the same long share."""
    return all(row["accuracy"] >= random_mix(outcomes, row["long_share"])["accuracy"] - 1e-9 for row in curve)
