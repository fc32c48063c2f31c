"""The ThinkSwitcher's targets (issue: GSM8K and MATH on held-out questions), in one place.

Where token counts exist (GSM8K): accuracy at least +0.5 points above the better single mode at no more than
40% of always-long's mean tokens. Without them (MATH): at most 1 point below always-long with no more than
50% of the questions sent long. (GSM8K's curve must also stay at or above random mixing: `curves.above_random`.)
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

MIN_GAIN_POINTS = 0.5
MAX_TOKEN_SHARE = 0.4
MAX_DROP_POINTS = 1.0
MAX_LONG_SHARE = 0.5


Number = TypeVar("Number", float, np.ndarray)


def met(points: Number, long_share: Number, token_share: Number | None) -> Number:
    """Whether (element-wise for arrays) a policy at `points` against the reference (the better single mode with tokens,
    always-long without), sending `long_share` long at `token_share` of always-long's tokens, meets the target."""
    if token_share is not None:
        return (points >= MIN_GAIN_POINTS) & (token_share <= MAX_TOKEN_SHARE)
    return (points >= -MAX_DROP_POINTS) & (long_share <= MAX_LONG_SHARE)
