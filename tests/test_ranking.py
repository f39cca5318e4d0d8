"""Rank correlations (Kendall tau, Spearman rho) against scipy, ties included."""

import random

import pytest
from scipy import stats

from studies.fronts.ranking import kendall_tau, spearman_rho


def test_identical_and_reversed_orders():
    a = [0.1, 0.5, 0.3, 0.9]
    assert kendall_tau(a, a) == 1.0 and spearman_rho(a, a) == pytest.approx(1.0)
    reverse = [-x for x in a]
    assert kendall_tau(a, reverse) == -1.0 and spearman_rho(a, reverse) == pytest.approx(-1.0)


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_scipy_including_ties(seed):
    rng = random.Random(seed)
    a = [rng.choice([1, 2, 3, 4, 5]) for _ in range(12)]
    b = [rng.choice([1, 2, 3, 4]) for _ in range(12)]
    assert kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    assert spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)


def test_one_swap_among_four():
    # 6 pairs, one discordant: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)


def test_needs_two_equal_length_sequences():
    with pytest.raises(ValueError):
        kendall_tau([1], [1])
    with pytest.raises(ValueError):
        spearman_rho([1, 2], [1, 2, 3])
