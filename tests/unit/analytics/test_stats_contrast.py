"""Two-arm contrasts: the Fieller bound on the relative change agrees with the contrast test."""

import math

import numpy as np
import pytest

from analytics.stats import (
    Alternative,
    RateEstimate,
    Side,
    contrast,
    contrast_e_value,
    difference_interval,
    relative_change_interval,
)

ALPHA, TARGET = 0.05, 10_000


def _rate(p: float, events: int) -> RateEstimate:
    return RateEstimate(p, p * (1 - p) / events, events, events, p * events)


def test_contrast_and_its_variance() -> None:
    prev, new = _rate(0.1, 1_000), _rate(0.05, 2_000)
    estimate, variance = contrast(prev, new, ratio=0.8)
    assert estimate == pytest.approx(0.05 - 0.08)
    assert variance == pytest.approx(new.variance + 0.64 * prev.variance)


def test_difference_interval_is_centred_on_the_difference() -> None:
    prev, new = _rate(0.1, 4_000), _rate(0.12, 4_000)
    interval = difference_interval(prev, new, alpha=ALPHA, target_n=TARGET)
    assert interval.lower + interval.upper == pytest.approx(2 * 0.02)
    assert 0.02 in interval


@pytest.mark.parametrize("seed", range(5))
def test_relative_bound_below_c_iff_the_contrast_test_rejects(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        events = int(rng.integers(200, 50_000))
        prev = _rate(float(rng.uniform(0.01, 0.2)), events)
        new = _rate(prev.rate * float(rng.uniform(0.3, 1.5)), events)
        c = float(rng.uniform(-0.5, 0.3))
        upper = relative_change_interval(
            prev, new, alpha=ALPHA, target_n=TARGET, side=Side.UPPER
        ).upper
        e = contrast_e_value(
            prev, new, ratio=1 + c, alternative=Alternative.LESS, alpha=ALPHA, target_n=TARGET
        )
        assert (upper < c) == (e >= 1 / ALPHA)
        lower = relative_change_interval(
            prev, new, alpha=ALPHA, target_n=TARGET, side=Side.LOWER
        ).lower
        e_up = contrast_e_value(
            prev, new, ratio=1 + c, alternative=Alternative.GREATER, alpha=ALPHA, target_n=TARGET
        )
        assert (lower > c) == (e_up >= 1 / ALPHA)


def test_two_sided_relative_interval_contains_the_point_estimate() -> None:
    prev, new = _rate(0.1, 20_000), _rate(0.07, 20_000)
    interval = relative_change_interval(prev, new, alpha=ALPHA, target_n=TARGET)
    assert interval.lower < -0.3 < interval.upper < 0
    assert interval.lower > -1


def test_zero_rates_give_uninformative_but_defined_results() -> None:
    zero = RateEstimate(0.0, 0.0, 500, 500, 0)
    some = _rate(0.05, 500)
    assert relative_change_interval(zero, some, alpha=ALPHA, target_n=TARGET).upper == math.inf
    both = contrast_e_value(
        zero, zero, ratio=0.8, alternative=Alternative.LESS, alpha=ALPHA, target_n=TARGET
    )
    assert both < 1 / ALPHA
    solved_to_zero = contrast_e_value(
        some, zero, ratio=0.8, alternative=Alternative.LESS, alpha=ALPHA, target_n=TARGET
    )
    assert math.isfinite(solved_to_zero)
