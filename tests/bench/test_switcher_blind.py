"""The ThinkSwitcher targets and the blind-set draws of bench/switcher_holdout.py."""

from __future__ import annotations

import numpy as np
import pytest

from bench.switcher_holdout import blind_draws, parse_blind
from bench.switcher_targets import met
from router_models.thinkswitch.curves import Outcomes


def outcomes(short: list[float], long: list[float], tokens: bool = True) -> Outcomes:
    n = len(short)
    return Outcomes(
        short=np.array(short), long=np.array(long),
        short_tokens=np.full(n, 100.0 if tokens else np.nan), long_tokens=np.full(n, 1000.0 if tokens else np.nan),
    )


def test_targets_with_and_without_tokens() -> None:
    assert met(0.5, 0.2, 0.40) and not met(0.49, 0.2, 0.3) and not met(2.0, 0.2, 0.41)
    assert met(-1.0, 0.5, None) and not met(-1.01, 0.3, None) and not met(0.0, 0.51, None)


def test_a_set_of_alike_questions_has_the_same_figures_each_draw() -> None:
    # every question alike: short wrong, long right, sent long; so is every set drawn from them
    plain = outcomes([0.0] * 10, [1.0] * 10)
    go = np.ones(10, dtype=bool)
    draws = blind_draws(plain, plain, [go, go], size=25, rng=np.random.default_rng(1))
    assert draws.points == pytest.approx(np.zeros(2000))  # as good as the better mode, long
    assert draws.long_share == pytest.approx(np.ones(2000))
    assert draws.token_share == pytest.approx(np.ones(2000))
    assert draws.met() == 0.0


def test_a_policy_better_than_both_modes_gains_on_every_set_it_is_drawn_from() -> None:
    # short right on the first 8, long (as the policy sees it) on the last 9; the switcher sends the last 2 long
    plain = outcomes([1.0] * 8 + [0.0] * 2, [0.0] + [1.0] * 9)
    go = np.array([False] * 8 + [True] * 2)
    draws = blind_draws(plain, plain, [go], size=400, rng=np.random.default_rng(3))
    assert draws.points.min() > 0 and np.mean(draws.points) == pytest.approx(10.0, abs=0.5)
    assert np.mean(draws.long_share) == pytest.approx(0.2, abs=0.01)
    assert draws.token_share is not None and draws.token_share.max() < 0.4
    assert draws.met() == 1.0


def test_smaller_sets_spread_and_are_judged_against_their_own_reference() -> None:
    plain = outcomes([1.0, 0.0] * 50, [0.0, 1.0] * 50, tokens=False)  # MATH-like: judged against always-long
    go = np.zeros(100, dtype=bool)  # all short: exactly as good as long on the whole set
    draws = blind_draws(plain, plain, [go], size=20, rng=np.random.default_rng(2))
    assert draws.token_share is None and draws.long_share.max() == 0.0
    assert np.mean(draws.points) == pytest.approx(0.0, abs=1.5) and draws.points.std() > 5
    # each set's points are short's accuracy minus long's on that set: short + long = 100% per question
    assert np.allclose(draws.points, np.round(draws.points / 10) * 10)  # (2k - 20) / 20 in points: steps of 10
    assert 0.0 < draws.met() < 1.0


def test_blind_sizes_are_parsed_or_refused() -> None:
    assert parse_blind(["GSM8K=409", "MATH=163"]) == {"GSM8K": 409, "MATH": 163}
    with pytest.raises(SystemExit, match="BENCH=N"):
        parse_blind(["GSM8K"])
    with pytest.raises(SystemExit, match="at least one"):
        parse_blind(["GSM8K=0"])
