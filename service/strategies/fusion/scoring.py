"""Perplexity of a segment under each member, and the choice of the segment to append."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenScores:
    """One member's tokens over a candidate: start offsets (relative to the candidate) and log-probs."""

    starts: list[int]
    logprobs: list[float]

    def before(self, cut: int) -> list[float]:
        """Log-probabilities of the tokens that start before `cut` (the tokens of the cut segment)."""
        return [lp for start, lp in zip(self.starts, self.logprobs, strict=True) if start < cut]


def perplexity(logprobs: Sequence[float]) -> float:
    """exp of the mean negative log-probability, counted in the scoring member's own tokens."""
    if not logprobs:
        return math.inf
    return math.exp(-sum(logprobs) / len(logprobs))


def average_perplexity(per_member: Mapping[str, float]) -> float:
    """The fusion score of one candidate: the plain mean of its perplexity under every scoring member."""
    values = list(per_member.values())
    return sum(values) / len(values) if values else math.inf


def select(scores: Sequence[float]) -> int:
    """Index of the candidate with the lowest average perplexity (ties: the earliest member)."""
    return min(range(len(scores)), key=lambda i: (scores[i], i))
