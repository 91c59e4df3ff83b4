"""Clustered ratio rates and Horvitz–Thompson estimates: values, variances, unbiasedness."""

import math

import numpy as np
import pytest

from analytics.stats import (
    ClusterSums,
    StatsInputError,
    horvitz_thompson_rate,
    horvitz_thompson_total,
    ratio_rate,
    ratio_rate_from_users,
)


def _clustered_users(rng: np.random.Generator, users: int) -> tuple[np.ndarray, np.ndarray]:
    """Users with 1..many conversations and very different propensities (strong clustering)."""
    n = 1 + rng.poisson(2.0, size=users)
    propensity = rng.beta(0.5, 4.5, size=users)  # mean 0.1, heavy user heterogeneity
    return n, rng.binomial(n, propensity)


def test_ratio_rate_value_and_variance_by_hand() -> None:
    est = ratio_rate_from_users([1, 2, 3], [0, 1, 3])
    assert est.rate == pytest.approx(4 / 6)
    residuals = np.array([0, 1, 3]) - 4 / 6 * np.array([1, 2, 3])
    assert est.variance == pytest.approx(3 / 2 * (residuals @ residuals) / 36)
    assert (est.events, est.units, est.positives) == (6, 3, 4)


def test_cluster_sums_equal_per_user_arrays() -> None:
    rng = np.random.default_rng(3)
    n, y = _clustered_users(rng, 1000)
    sums = ClusterSums.from_users(n, y)
    assert sums == ClusterSums(1000, n.sum(), y.sum(), n @ n, y @ y, n @ y)
    assert ratio_rate(sums) == ratio_rate_from_users(n, y)


def test_empty_and_single_user_rates_carry_no_information() -> None:
    assert math.isinf(ratio_rate(ClusterSums(0, 0, 0, 0, 0, 0)).variance)
    single = ratio_rate_from_users([4], [1])
    assert single.rate == 0.25
    assert math.isinf(single.variance)


def test_delta_method_variance_matches_simulation_and_naive_one_does_not() -> None:
    rng = np.random.default_rng(7)
    rates, estimated, naive = [], [], []
    for _ in range(2000):
        n, y = _clustered_users(rng, 400)
        est = ratio_rate_from_users(n, y)
        rates.append(est.rate)
        estimated.append(est.variance)
        naive.append(est.rate * (1 - est.rate) / est.events)  # conversations as independent
    empirical = np.var(rates, ddof=1)
    assert np.mean(estimated) == pytest.approx(empirical, rel=0.1)
    assert np.mean(naive) < 0.75 * empirical  # ignoring users understates the variance


@pytest.mark.parametrize(
    ("n", "y"), [([1, 2], [1]), ([1, -1], [0, 0]), ([[1]], [[0]])], ids=["shape", "neg", "2d"]
)
def test_ratio_rate_refuses_impossible_counts(n: list[int], y: list[int]) -> None:
    with pytest.raises(StatsInputError):
        ratio_rate_from_users(n, y)


def _risk_weighted_population(rng: np.random.Generator, size: int) -> tuple[np.ndarray, ...]:
    """Flagged conversations have problems far more often and are sampled far more often."""
    flagged = rng.random(size) < 0.1
    problem = rng.random(size) < np.where(flagged, 0.5, 0.02)
    pi = np.where(flagged, 0.6, 0.03)
    return problem.astype(float), pi


def test_horvitz_thompson_is_unbiased_where_the_sample_rate_is_not() -> None:
    rng = np.random.default_rng(11)
    problem, pi = _risk_weighted_population(rng, 20_000)
    true_rate = problem.mean()
    ht_rates, ht_vars, naive_rates = [], [], []
    for _ in range(1000):
        sampled = rng.random(problem.size) < pi  # Poisson sampling with the stored π
        est = horvitz_thompson_rate(problem[sampled], pi[sampled], served=problem.size)
        ht_rates.append(est.rate)
        ht_vars.append(est.variance)
        naive_rates.append(problem[sampled].mean())
    se_of_mean = np.std(ht_rates) / math.sqrt(len(ht_rates))
    assert abs(np.mean(ht_rates) - true_rate) < 3 * se_of_mean
    assert np.mean(ht_vars) == pytest.approx(np.var(ht_rates), rel=0.15)
    assert np.mean(naive_rates) > 3 * true_rate  # the flagged sample overstates the rate


def test_horvitz_thompson_total_by_hand() -> None:
    ht = horvitz_thompson_total([1, 0, 1], [0.5, 0.2, 1.0])
    assert ht.total == pytest.approx(3.0)
    assert ht.variance == pytest.approx(0.5 / 0.25)  # the π = 1 unit adds no variance


@pytest.mark.parametrize("pi", [0.0, 1.5, float("nan")])
def test_horvitz_thompson_refuses_impossible_probabilities(pi: float) -> None:
    with pytest.raises(StatsInputError, match="inclusion probabilities"):
        horvitz_thompson_total([1.0], [pi])


def test_horvitz_thompson_rate_needs_conversations_served() -> None:
    with pytest.raises(StatsInputError, match="served"):
        horvitz_thompson_rate([1.0], [0.5], served=0)
