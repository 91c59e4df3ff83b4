"""Confidence sequences and mixture e-values: formulas, consistency, time-uniform coverage."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from analytics.stats import (
    Side,
    StatsInputError,
    boundary_multiplier,
    confidence_sequence,
    e_value,
    mixture_rho2,
)

ALPHA, TARGET = 0.05, 10_000


def test_two_sided_multiplier_is_the_normal_mixture_boundary() -> None:
    n = 2_500
    rho2 = (-2 * math.log(ALPHA) + math.log(1 - 2 * math.log(ALPHA))) / TARGET
    assert mixture_rho2(alpha=ALPHA, target_n=TARGET) == pytest.approx(rho2)
    # Waudby-Smith et al. Thm 2.2 with σ = 1: half-width·sqrt(n) in z units.
    expected = math.sqrt(
        2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / ALPHA)
    )
    got = boundary_multiplier(n, alpha=ALPHA, target_n=TARGET, two_sided=True)
    assert got == pytest.approx(expected * math.sqrt(n))


@pytest.mark.parametrize("n", [10, 1_000, 10_000, 1_000_000])
def test_one_sided_bound_is_wider_than_fixed_sample_and_narrower_than_two_sided(n: int) -> None:
    one = boundary_multiplier(n, alpha=ALPHA, target_n=TARGET, two_sided=False)
    two = boundary_multiplier(n, alpha=ALPHA, target_n=TARGET, two_sided=True)
    assert NormalDist().inv_cdf(1 - ALPHA) < one < two


def test_bound_is_tightest_near_the_target() -> None:
    widths = {
        n: boundary_multiplier(n, alpha=ALPHA, target_n=TARGET, two_sided=True)
        for n in (1_000, 10_000, 100_000)
    }
    assert widths[10_000] < widths[1_000]
    assert widths[10_000] < widths[100_000]


@pytest.mark.parametrize("n", [50, 5_000, 500_000])
def test_e_value_crosses_one_over_alpha_exactly_at_the_one_sided_bound(n: int) -> None:
    g = boundary_multiplier(n, alpha=ALPHA, target_n=TARGET, two_sided=False)
    assert e_value(g, n, alpha=ALPHA, target_n=TARGET) == pytest.approx(1 / ALPHA)
    assert e_value(g * 0.99, n, alpha=ALPHA, target_n=TARGET) < 1 / ALPHA
    assert e_value(0.0, n, alpha=ALPHA, target_n=TARGET) < 1


def test_e_value_edges() -> None:
    assert e_value(-math.inf, 100, alpha=ALPHA, target_n=TARGET) == 0.0
    assert math.isfinite(e_value(math.inf, 100, alpha=ALPHA, target_n=TARGET))
    assert e_value(-50.0, 100, alpha=ALPHA, target_n=TARGET) >= 0.0
    assert e_value(3.0, 0, alpha=ALPHA, target_n=TARGET) == 1.0


def test_e_value_has_expectation_at_most_one_under_the_null() -> None:
    z = np.random.default_rng(5).standard_normal(50_000)
    values = [e_value(float(v), 5_000, alpha=ALPHA, target_n=TARGET) for v in z]
    assert np.mean(values) == pytest.approx(1.0, abs=0.03)  # a martingale: exactly 1 at θ0
    shifted = [e_value(float(v) - 1, 5_000, alpha=ALPHA, target_n=TARGET) for v in z]
    assert np.mean(shifted) < 0.5  # inside the null, it is a supermartingale


def test_sides_and_infinite_variance() -> None:
    lower = confidence_sequence(1.0, 0.04, 100, alpha=ALPHA, target_n=TARGET, side=Side.LOWER)
    upper = confidence_sequence(1.0, 0.04, 100, alpha=ALPHA, target_n=TARGET, side=Side.UPPER)
    both = confidence_sequence(1.0, 0.04, 100, alpha=ALPHA, target_n=TARGET)
    assert lower.upper == math.inf
    assert upper.lower == -math.inf
    assert both.lower < lower.lower < 1.0 < upper.upper < both.upper
    none = confidence_sequence(1.0, math.inf, 100, alpha=ALPHA, target_n=TARGET)
    assert (none.lower, none.upper) == (-math.inf, math.inf)
    with pytest.raises(StatsInputError, match="variance"):
        confidence_sequence(1.0, -1.0, 100, alpha=ALPHA, target_n=TARGET)


def test_coverage_holds_at_every_look_where_a_repeated_fixed_interval_fails() -> None:
    """Bernoulli(0.1) stream, looked at after every 10 observations up to 5000."""
    rng = np.random.default_rng(17)
    runs, steps, p = 1_000, 5_000, 0.1
    looks = np.arange(10, steps + 1, 10)
    x = rng.random((runs, steps)) < p
    sums = x.cumsum(axis=1)[:, looks - 1]
    means = sums / looks
    se = np.sqrt(np.maximum(means * (1 - means), 1e-12) / looks)
    g = np.array(
        [boundary_multiplier(float(n), alpha=ALPHA, target_n=2_000, two_sided=False) for n in looks]
    )
    always_valid_miss = np.any(means - g * se > p, axis=1).mean()
    fixed_miss = np.any(means - NormalDist().inv_cdf(1 - ALPHA) * se > p, axis=1).mean()
    assert always_valid_miss <= ALPHA
    assert fixed_miss > 3 * ALPHA  # peeking at a fixed-sample bound inflates the error


def test_level_and_target_are_checked() -> None:
    with pytest.raises(StatsInputError, match="alpha"):
        mixture_rho2(alpha=1.5, target_n=TARGET)
    with pytest.raises(StatsInputError, match="target_n"):
        mixture_rho2(alpha=ALPHA, target_n=0)
