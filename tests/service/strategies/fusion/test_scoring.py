"""Perplexity, the average over members, and the selection of the segment to append."""

from __future__ import annotations

import math

import pytest

from service.strategies.fusion.scoring import TokenScores, average_perplexity, perplexity, select


def test_perplexity_is_exp_of_mean_negative_logprob() -> None:
    assert perplexity([math.log(0.5), math.log(0.5)]) == pytest.approx(2.0)
    assert perplexity([math.log(0.25), 0.0]) == pytest.approx(2.0)  # geometric mean of 1/p
    assert perplexity([]) == math.inf


def test_perplexity_is_length_normalised() -> None:
    # The same per-token probability gives the same perplexity whatever the token count.
    assert perplexity([math.log(0.1)] * 2) == pytest.approx(perplexity([math.log(0.1)] * 7))


def test_tokens_before_a_cut_are_the_segment_tokens() -> None:
    scores = TokenScores(starts=[-1, 3, 7, 12], logprobs=[-0.1, -0.2, -0.3, -0.4])
    assert scores.before(7) == [-0.1, -0.2]
    assert scores.before(100) == [-0.1, -0.2, -0.3, -0.4]


def test_average_is_over_members_not_tokens() -> None:
    # One member with many tokens does not outweigh another with few.
    assert average_perplexity({"a": 2.0, "b": 4.0}) == pytest.approx(3.0)
    assert average_perplexity({}) == math.inf


def test_select_takes_the_lowest_average_and_breaks_ties_by_order() -> None:
    assert select([3.2, 1.5, 2.0]) == 1
    assert select([2.0, 2.0]) == 0


def test_a_segment_both_members_like_beats_one_only_its_writer_likes() -> None:
    # Writer A is sure of its own segment (PPL 1.1) but B finds it odd (PPL 20); both like B's (3, 4).
    own_favourite = average_perplexity({"a": 1.1, "b": 20.0})
    shared = average_perplexity({"a": 3.0, "b": 4.0})
    assert select([own_favourite, shared]) == 1
