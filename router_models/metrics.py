"""The routing metric: normalised score µn = 100 · (µ − random) / (oracle − random).

As in Lookahead routing (Huang et al., NeurIPS 2025).
"""

from __future__ import annotations

import numpy as np


def random_score(scores: np.ndarray) -> float:
    """Expected score of a uniformly random choice: the mean of the candidates' means. (N, T) raw."""
    return float(scores.mean())


def oracle_score(scores: np.ndarray) -> float:
    """Mean over queries of the best candidate's score."""
    return float(scores.max(axis=1).mean())


def routed_score(scores: np.ndarray, choices: np.ndarray) -> float:
    """Mean score of the chosen candidates; `choices` (N,) are candidate indices."""
    return float(scores[np.arange(len(choices)), choices].mean())


def mu_n(scores: np.ndarray, choices: np.ndarray) -> float:
    """µn of a routing on one benchmark; 0 where no routing can beat random (every query a tie)."""
    low, high = random_score(scores), oracle_score(scores)
    if high - low <= 1e-12:
        return 0.0
    return 100.0 * (routed_score(scores, choices) - low) / (high - low)


def mean_mu_n(scores: np.ndarray, choices: np.ndarray, benchmarks: list[str]) -> float:
    """Macro average of µn over the benchmarks present (what checkpoint selection maximises)."""
    names = sorted(set(benchmarks))
    tags = np.array(benchmarks)
    return float(np.mean([mu_n(scores[tags == n], choices[tags == n]) for n in names])) if names else 0.0
