"""Issue 14's worked examples: a small arm with few events is not overwhelming evidence.

Each fixed case failed before the verdicts were sized by the smaller arm: control 150 of
30,000 against a canary 0 of 300 gave e = 1e31 and solved_candidate (an exact test gives
p ≈ 0.30), and conversion 1,500 of 30,000 against 5 of 300 gave regressed.
"""

import math

import numpy as np
import pytest
from scipy import stats  # type: ignore[import-untyped]

from analytics.stats import (
    ArmRates,
    ClusterSums,
    ComparisonSettings,
    CountSide,
    Decision,
    Direction,
    HealthCheck,
    Verdict,
    binomial_mixture_log_e,
    compare_versions,
    contrast_e_value,
    effective_units,
    horvitz_thompson_rate,
    ratio_rate,
    stratified_count_e_value,
)
from analytics.stats.contrast import Alternative

HEALTHY = HealthCheck(srm_p_value=0.5, multiple_exposure_share=0.0, reasons=())


def _arm(users: int, positives: int) -> ClusterSums:
    """One conversation per user, ``positives`` of them with the problem."""
    return ClusterSums(users, users, positives, users, positives, positives)


def _pair(prev: tuple[int, int], new: tuple[int, int], **kw: object) -> ArmRates:
    return ArmRates(ratio_rate(_arm(*prev)), ratio_rate(_arm(*new)), exact_counts=True, **kw)  # type: ignore[arg-type]


def test_an_empty_canary_of_300_is_not_solved() -> None:
    pair = _pair((30_000, 150), (300, 0))
    result = compare_versions({"t": pair}, {}, HEALTHY, previously_met={"t": 0.0})
    metric = result.targets["t"]
    assert metric.verdict is Verdict.INSUFFICIENT_DATA
    assert metric.expected_events == pytest.approx(150 * 300 / 30_300)
    assert metric.e_value < 20  # was 1e31
    assert not metric.solved_criteria_met
    # The exact one-sided test agrees that this is no evidence: P(0 | rate 0.005) ≈ 0.22.
    assert stats.binomtest(0, 300, 150 / 30_000, alternative="less").pvalue > 0.2


def test_an_empty_arm_never_makes_the_contrast_variance_zero() -> None:
    prev, new = ratio_rate(_arm(30_000, 150)), ratio_rate(_arm(300, 0))
    assert new.variance == 0
    e = contrast_e_value(
        prev, new, ratio=0.8, alternative=Alternative.LESS, alpha=0.05, target_n=10_000
    )
    assert e < 20  # the floor (one pooled event in the arm) keeps the evidence finite


def test_five_conversions_in_300_are_too_few_to_call_a_regression() -> None:
    pair = _pair((30_000, 1_500), (300, 5), direction=Direction.LOWER_IS_WORSE)
    result = compare_versions({}, {"conversion_rate": pair}, HEALTHY)
    metric = result.guardrails["conversion_rate"]
    assert metric.verdict is not Verdict.REGRESSED
    assert result.decision is Decision.PROCEED
    assert metric.expected_events < ComparisonSettings().min_expected_events
    assert "withholds" in metric.reason  # the interval alone would have excluded 0


def test_a_clear_regression_in_a_small_canary_still_rolls_back() -> None:
    """Evidence sized by the smaller arm still acts: 60 of 600 against 5 %."""
    pair = _pair((60_000, 3_000), (600, 75))
    result = compare_versions({"t": pair}, {}, HEALTHY)
    assert result.targets["t"].verdict is Verdict.REGRESSED


def test_effective_units_follow_the_smaller_arm() -> None:
    assert effective_units(5_000, 5_000) == 10_000  # 50/50: both arms, as gbstats
    assert effective_units(99_000, 1_000) == pytest.approx(3_960)  # ~4x the canary
    assert effective_units(0, 1_000) == 0


def test_the_count_test_is_exact_at_small_counts() -> None:
    """Type I error of the beta-binomial mixture under the null, by enumeration."""
    theta0, total, alpha = 0.1, 40, 0.05
    crossing = [
        k for k in range(total + 1)
        if binomial_mixture_log_e(k, total, theta0, side=CountSide.GREATER, strength=20.0)
        >= math.log(1 / alpha)
    ]  # fmt: skip
    error = stats.binom.sf(min(crossing) - 1, total, theta0)
    assert error <= alpha


def test_the_count_test_rejects_a_clear_difference_and_multiplies_over_steps() -> None:
    one = stratified_count_e_value(
        [(10_000, 500, 10_000, 250)], ratio=1.0, side=CountSide.LESS, strength=50.0
    )
    assert one > 1e6
    two = stratified_count_e_value(
        [(10_000, 500, 10_000, 250)] * 2, ratio=1.0, side=CountSide.LESS, strength=50.0
    )
    assert two == pytest.approx(one * one, rel=1e-9)


def test_horvitz_thompson_includes_the_outcome_variance() -> None:
    """With pi = 1 the HT rate is a plain proportion: its variance is not 0."""
    ten = horvitz_thompson_rate(np.r_[np.ones(10), np.zeros(190)], np.ones(200), served=200)
    assert ten.variance == pytest.approx(0.05 * 0.95 / 199)
    twenty = horvitz_thompson_rate(np.r_[np.ones(20), np.zeros(180)], np.ones(200), served=200)
    pair = ArmRates(ten, twenty)
    result = compare_versions({"t": pair}, {}, HEALTHY)
    interval = result.targets["t"].difference_interval
    assert interval.upper - interval.lower > 0.05


def test_the_shown_interval_is_the_regression_decisions() -> None:
    pair = _pair((20_000, 1_000), (20_000, 1_120))
    result = compare_versions({"t": pair}, {}, HEALTHY)
    metric = result.targets["t"]
    assert metric.difference_level == pytest.approx(0.05)  # one metric: alpha / 1
    assert metric.difference_interval.lower == pytest.approx(metric.regression_bound)
    assert (metric.verdict is Verdict.REGRESSED) == (metric.difference_interval.lower > 0)


def test_difference_intervals_stay_within_the_range_of_a_difference_of_rates() -> None:
    prev = horvitz_thompson_rate(np.r_[np.ones(9), np.zeros(1)], np.full(10, 0.5), served=30)
    new = horvitz_thompson_rate(np.zeros(10), np.full(10, 0.5), served=30)
    result = compare_versions({}, {"risk": ArmRates(prev, new)}, HEALTHY)
    interval = result.guardrails["risk"].difference_interval
    assert -1.0 <= interval.lower < interval.upper <= 1.0
