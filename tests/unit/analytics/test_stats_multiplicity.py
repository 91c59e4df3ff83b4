"""Benjamini–Hochberg and e-BH on known examples."""

import numpy as np
import pytest

from analytics.stats import (
    StatsInputError,
    benjamini_hochberg,
    e_benjamini_hochberg,
    p_value_from_e_value,
)

# Benjamini & Hochberg (1995), section 4: 15 p-values, q = 0.05 rejects the four smallest.
BH_1995 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459,
           0.3240, 0.4262, 0.5719, 0.6528, 0.7590, 1.0000]  # fmt: skip


def test_bh_reproduces_the_original_example() -> None:
    rejected = benjamini_hochberg(BH_1995, alpha=0.05)
    assert rejected == [True] * 4 + [False] * 11


def test_bh_is_step_up_and_order_free() -> None:
    # p_(2) = 0.04 > 0.05·1/3 alone, but p_(3) = 0.05 ≤ 0.05·3/3 lets all three through.
    assert benjamini_hochberg([0.05, 0.04, 0.03], alpha=0.05) == [True, True, True]
    assert benjamini_hochberg([0.5, 0.01, 0.9], alpha=0.05) == [False, True, False]
    assert benjamini_hochberg([0.2, 0.3], alpha=0.05) == [False, False]
    assert benjamini_hochberg([], alpha=0.05) == []


def test_e_bh_known_examples() -> None:
    # K = 4, α = 0.1: thresholds K/(α·k) = 40, 20, 13.3, 10.
    assert e_benjamini_hochberg([100, 30, 5, 0.5], alpha=0.1) == [True, True, False, False]
    # No e-value reaches 40, yet three reach 13.3: step-up rejects all three.
    assert e_benjamini_hochberg([25, 1, 25, 25], alpha=0.1) == [True, False, True, True]
    # K = 3: thresholds 30, 15, 10, each missed just barely.
    assert e_benjamini_hochberg([29, 14, 9.9], alpha=0.1) == [False, False, False]


def test_e_bh_is_bh_on_inverse_e_values() -> None:
    rng = np.random.default_rng(2)
    for _ in range(200):
        e = rng.lognormal(1.0, 2.0, size=8)
        p = [p_value_from_e_value(float(v)) for v in e]
        assert e_benjamini_hochberg(list(e), alpha=0.1) == benjamini_hochberg(p, alpha=0.1)


def test_e_bh_controls_fdr_under_the_null() -> None:
    """All nulls: E[e] = 1 e-values (likelihood ratios); rejecting anything is a false one."""
    rng = np.random.default_rng(9)
    z = rng.standard_normal((20_000, 5))
    e = np.exp(z - 0.5)  # E[e] = 1 under the null
    any_rejected = np.mean([any(e_benjamini_hochberg(list(row), alpha=0.1)) for row in e])
    assert any_rejected <= 0.1


@pytest.mark.parametrize("bad", [[-0.1], [1.1], [float("nan")]])
def test_bh_refuses_impossible_p_values(bad: list[float]) -> None:
    with pytest.raises(StatsInputError, match="p-values"):
        benjamini_hochberg(bad, alpha=0.05)


def test_e_bh_refuses_negative_e_values_and_bad_levels() -> None:
    with pytest.raises(StatsInputError, match="e-values"):
        e_benjamini_hochberg([-1.0], alpha=0.05)
    with pytest.raises(StatsInputError, match="alpha"):
        e_benjamini_hochberg([1.0], alpha=0.0)
    with pytest.raises(StatsInputError, match="e-value"):
        p_value_from_e_value(-2.0)
