"""Experiment health: sample-ratio mismatch and multiple exposure."""

import numpy as np
import pytest

from analytics.stats import (
    ComparisonSettings,
    StatsInputError,
    check_health,
    multiple_exposure_share,
    srm_p_value,
)


def test_srm_fires_on_52_48_when_50_50_was_configured() -> None:
    health = check_health([52_000, 48_000], [0.5, 0.5], users_in_both=0)
    assert health.srm_p_value < 1e-30
    assert not health.healthy
    assert "sample ratio mismatch" in health.reasons[0]


def test_srm_stays_quiet_on_a_correct_deliberate_95_5_split() -> None:
    rng = np.random.default_rng(21)
    canary = rng.binomial(100_000, 0.05, size=500)
    flagged = [
        not check_health([100_000 - c, c], [0.95, 0.05], users_in_both=0).healthy for c in canary
    ]
    assert np.mean(flagged) <= 0.005  # the test's own false alarm rate is 0.1 %
    assert srm_p_value([95_000, 5_000], [0.95, 0.05]) == pytest.approx(1.0)


def test_srm_notices_a_95_5_split_served_as_94_6() -> None:
    assert srm_p_value([94_000, 6_000], [0.95, 0.05]) < 0.001


def test_srm_with_three_arms_and_no_users() -> None:
    assert srm_p_value([3_300, 3_300, 3_400], [1 / 3, 1 / 3, 1 / 3]) > 0.1
    assert srm_p_value([0, 0], [0.5, 0.5]) == 1.0


@pytest.mark.parametrize(
    ("counts", "shares"),
    [([10], [1.0]), ([10, 10], [0.6, 0.6]), ([10, -1], [0.5, 0.5]), ([10, 10], [1.0, 0.0])],
    ids=["one-arm", "not-summing", "negative", "zero-share"],
)
def test_srm_refuses_impossible_inputs(counts: list[int], shares: list[float]) -> None:
    with pytest.raises(StatsInputError):
        srm_p_value(counts, shares)


def test_multiple_exposure_above_one_percent_is_unhealthy() -> None:
    assert check_health([5_000, 5_000], [0.5, 0.5], users_in_both=100).healthy  # exactly 1 %
    health = check_health([5_000, 5_000], [0.5, 0.5], users_in_both=101)
    assert not health.healthy
    assert health.multiple_exposure_share == pytest.approx(0.0101)
    assert "both versions" in health.reasons[0]


def test_thresholds_come_from_settings() -> None:
    lenient = ComparisonSettings(srm_p_threshold=1e-50, max_multiple_exposure_share=0.05)
    assert check_health([52_000, 48_000], [0.5, 0.5], users_in_both=4_000, settings=lenient).healthy


def test_multiple_exposure_share_checks_its_counts() -> None:
    assert multiple_exposure_share(0, 0) == 0.0
    with pytest.raises(StatsInputError):
        multiple_exposure_share(5, 4)
