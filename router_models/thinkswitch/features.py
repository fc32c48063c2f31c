"""Cheap surface features of a question that the sentence embedding blurs: its length and its numbers.

Longer questions with more (and larger, decimal, percentage) numbers take more steps, and the number of
steps is what decides whether thinking pays. Each feature is log-scaled so one outlier does not dominate.
"""

from __future__ import annotations

import math
import re

import numpy as np

NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
LATEX = re.compile(r"\\[a-zA-Z]+|\$")

FEATURE_NAMES: tuple[str, ...] = (
    "log_chars",
    "log_words",
    "log_numbers",
    "log_distinct_numbers",
    "log_max_number",
    "has_percent",
    "has_decimal",
    "log_sentences",
    "log_latex_tokens",
)


def question_features(text: str) -> list[float]:
    """The `FEATURE_NAMES` values of one question."""
    numbers = NUMBER.findall(text)
    values = [float(number.replace(",", "")) for number in numbers] or [0.0]
    sentences = text.count(".") + text.count("?") + text.count("!")
    return [
        math.log1p(len(text)),
        math.log1p(len(text.split())),
        math.log1p(len(numbers)),
        math.log1p(len(set(numbers))),
        math.log1p(min(max(values), 1e12)),
        float("%" in text or "percent" in text.lower()),
        float(any("." in number for number in numbers)),
        math.log1p(sentences),
        math.log1p(len(LATEX.findall(text))),
    ]


def feature_matrix(texts: list[str]) -> np.ndarray:
    """(N,) texts -> (N, F) float32 features, F = len(FEATURE_NAMES)."""
    return np.asarray([question_features(text) for text in texts], dtype=np.float32).reshape(
        -1, len(FEATURE_NAMES)
    )
