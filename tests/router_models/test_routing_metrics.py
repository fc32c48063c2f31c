import numpy as np

from router_models.metrics import mean_mu_n, mu_n

SCORES = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])


def test_mu_n_is_100_for_the_oracle_and_0_for_random() -> None:
    assert mu_n(SCORES, SCORES.argmax(axis=1)) == 100.0
    # random = mean of candidate means = 0.5; oracle = 0.75; always picking 0 scores 0.5
    assert mu_n(SCORES, np.zeros(4, dtype=int)) == 0.0
    assert mu_n(SCORES, np.array([1, 0, 0, 0])) == -100.0


def test_all_tied_benchmark_counts_zero_and_average_is_macro() -> None:
    tied = np.ones((3, 2))
    assert mu_n(tied, np.zeros(3, dtype=int)) == 0.0
    scores = np.vstack([SCORES, tied[:2]])
    choices = np.array([0, 1, 0, 0, 0, 0])
    assert mean_mu_n(scores, choices, ["a"] * 4 + ["b"] * 2) == 50.0
