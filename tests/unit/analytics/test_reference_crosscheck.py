"""Cross-checks of the statistics against independent reference implementations (issue 14).

The references are GrowthBook's stats engine (``gbstats``) and Spotify's
``spotify-confidence``, both installed by the ``dev`` extra. They are imported at module
level on purpose: a missing or broken reference is a collection error, never a skip.

On the same inputs this compares

- the two-sided always-valid confidence sequence (``sequential.confidence_sequence``,
  ``boundary_multiplier``) with gbstats' ``SequentialTwoSidedTTest.confidence_interval``
  (Waudby-Smith et al. eq. 9, ρ from their eq. 161, ``sequential_tuning_parameter`` =
  our ``target_n``), to 1e-9 relative;
- the user-clustered delta-method variance of a rate (``rates.ratio_rate``) with
  gbstats' ``RatioStatistic`` (per-unit variance / n, as gbstats' own tests use it), to
  1e-9 relative; there is no finite-sample factor between them (see that test);
- the SRM p-value (``health.srm_p_value``) with gbstats' ``utils.check_srm`` and
  spotify-confidence's ``sample_ratio_test``.

Where the project deliberately differs, and what is therefore not cross-checked:

- regressed and solved verdicts use a one-sided normal-mixture boundary and e-value
  (Howard et al. 2021, Prop. 6). gbstats' sequential test is two-sided only (its
  one-sided tests are fixed-sample t-tests), so the one-sided boundary has no reference
  here; ``test_stats_sequential`` checks it against its own definition and by simulation.
- gbstats sizes a two-arm sequence by N = n_a + n_b. The project's contrasts pass the n
  that ``analytics.stats.contrast.units`` gives, which need not be n_a + n_b (see that
  module's docstring); so the boundary is compared here at equal n, not the choice of n.
- gbstats returns an interval for any arm with n > 1 (variance 0 for a single unit,
  after which its tests return an uninformative default). The project gives one user an
  infinite variance, and its verdict gates (``min_events_per_arm``,
  ``min_expected_events``, ``min_events_for_regression``, sized by the smaller arm)
  refuse a verdict on small arms where gbstats would still report a result: a 1 % canary
  of a few hundred conversations expects too few events for the asymptotic bounds.
- spotify-confidence computes the SRM p-value as 1 − cdf, which loses everything below
  about 1e-16 (it returns 0); ours and gbstats use the survival function, so against
  spotify the comparison allows an absolute 1e-12 as well.
"""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from gbstats.frequentist.tests import (
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import RatioStatistic, SampleMeanStatistic
from gbstats.utils import check_srm
from spotify_confidence.analysis.frequentist.sample_ratio_test import sample_ratio_test

from analytics.stats.health import srm_p_value
from analytics.stats.rates import ClusterSums, RateEstimate, ratio_rate
from analytics.stats.sequential import Side, boundary_multiplier, confidence_sequence

REL = 1e-9


def _mean_statistic(n: int, mean: float, variance: float) -> SampleMeanStatistic:
    """A gbstats per-unit statistic with the given sample mean and (n − 1) sample variance."""
    total = mean * n
    return SampleMeanStatistic(n=n, sum=total, sum_squares=variance * (n - 1) + total * total / n)


def _gbstats_sequential(
    n: int, *, alpha: float, target_n: float, difference_type: str
) -> SequentialTwoSidedTTest:
    n_a = n // 2
    stat_a = _mean_statistic(n_a, 0.12, 0.11)
    stat_b = _mean_statistic(n - n_a, 0.10, 0.09)
    config = SequentialConfig(
        alpha=alpha, sequential_tuning_parameter=target_n, difference_type=difference_type
    )
    return SequentialTwoSidedTTest(stat_a, stat_b, config)


@pytest.mark.parametrize(
    ("n", "alpha", "target_n", "difference_type"),
    list(
        itertools.product(
            [50, 1_001, 10_000, 123_457, 2_000_000],
            [0.01, 0.05, 0.2],
            [500, 10_000, 250_000],
            ["absolute", "relative"],
        )
    ),
)
def test_two_sided_sequence_matches_gbstats(
    n: int, alpha: float, target_n: float, difference_type: str
) -> None:
    """confidence_sequence(Side.BOTH) = gbstats' SequentialTwoSidedTTest interval.

    Both get the same estimate (gbstats' point estimate), the same variance of it
    (gbstats' ``variance``, i.e. s²/N with s² its per-unit variance) and n = N = n_a + n_b;
    gbstats' ``sequential_tuning_parameter`` is our ``target_n``. Ends, half-width and the
    multiplier g = half-width / sqrt(variance) agree to 1e-9 relative.
    """
    reference = _gbstats_sequential(
        n, alpha=alpha, target_n=target_n, difference_type=difference_type
    )
    lower, upper = (float(end) for end in reference.confidence_interval)
    estimate, variance = float(reference.point_estimate), float(reference.variance)

    ours = confidence_sequence(
        estimate, variance, n, alpha=alpha, target_n=target_n, side=Side.BOTH
    )

    assert ours.lower == pytest.approx(lower, rel=REL)
    assert ours.upper == pytest.approx(upper, rel=REL)
    assert (ours.upper - ours.lower) / 2 == pytest.approx((upper - lower) / 2, rel=REL)
    g = boundary_multiplier(n, alpha=alpha, target_n=target_n, two_sided=True)
    assert g == pytest.approx((upper - lower) / 2 / math.sqrt(variance), rel=REL)


@pytest.mark.parametrize(("n", "expected"), [(1_000, 3.855), (10_000, 3.035), (100_000, 3.242)])
def test_multiplier_pinned_at_target_10k(n: int, expected: float) -> None:
    """The two-sided multiplier at α = 0.05, target_n = 10k, ours and gbstats', to 3 places.

    3.855 / 3.035 / 3.242 at n = 1k / 10k / 100k: the boundary is tightest near target_n.
    """
    ours = boundary_multiplier(n, alpha=0.05, target_n=10_000, two_sided=True)
    reference = _gbstats_sequential(n, alpha=0.05, target_n=10_000, difference_type="absolute")
    lower, upper = reference.confidence_interval
    theirs = float(upper - lower) / 2 / math.sqrt(float(reference.variance))
    assert round(ours, 3) == expected
    assert round(theirs, 3) == expected
    assert ours == pytest.approx(theirs, rel=REL)


def _users(seed: int, m: int, *, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-user conversations served n_i and problem counts y_i, with user heterogeneity."""
    rng = np.random.default_rng(seed)
    n = 1 + rng.poisson(2.5, size=m)
    p = rng.beta(0.5, 8.0, size=m)
    y = rng.binomial(n, p).astype(np.float64)
    if weighted:
        # labelled samples weighted 1/π: per-user sums of y/π are not integers
        y = y / rng.choice([1.0, 0.5, 0.2, 0.05], size=m)
    return n.astype(np.float64), y


def _gbstats_ratio(n: np.ndarray, y: np.ndarray) -> RatioStatistic:
    m = int(n.size)
    return RatioStatistic(
        n=m,
        m_statistic=SampleMeanStatistic(n=m, sum=float(y.sum()), sum_squares=float(y @ y)),
        d_statistic=SampleMeanStatistic(n=m, sum=float(n.sum()), sum_squares=float(n @ n)),
        m_d_sum_of_products=float(n @ y),
    )


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("seed", "m"), [(4, 2), (2, 3), (3, 25), (5, 1_000), (6, 60_000)])
def test_ratio_variance_matches_gbstats(seed: int, m: int, weighted: bool) -> None:
    """ratio_rate's variance = gbstats' RatioStatistic.variance / n, no extra factor.

    gbstats' RatioStatistic.variance is the per-user delta-method variance built from the
    (m − 1)-denominator sample variances and covariance of the per-user sums y_i and n_i;
    the variance of the ratio is that divided by the m users (its tests do exactly that,
    checked below with a two-arm TwoSidedTTest). With R = Σy/Σn,

        (S_yy − 2R·S_yn + R²·S_nn) / (m·n̄²) = Σ(y_i − R·n_i)² / (m − 1) · m / (Σn)²,

    which is our m/(m − 1)·Σ(y_i − R·n_i)²/(Σn)²: gbstats' (m − 1) denominators are our
    m/(m − 1) factor, so the two agree to rounding (1e-9 relative) with no correction.
    """
    n, y = _users(seed, m, weighted=weighted)
    ours = ratio_rate(ClusterSums.from_users(n, y))
    reference = _gbstats_ratio(n, y)
    assert reference.variance > 0  # the seeds give every case some problem events

    assert ours.rate == pytest.approx(float(reference.mean), rel=REL)
    assert ours.variance == pytest.approx(float(reference.variance) / m, rel=REL)
    # Direct definition, as a third opinion on the algebra above.
    residual = y - ours.rate * n
    assert ours.variance == pytest.approx(
        m / (m - 1) * (residual @ residual) / n.sum() ** 2, rel=REL
    )


def test_two_arm_ratio_variance_matches_gbstats_ttest() -> None:
    """gbstats' absolute-difference t-test variance on two ratio arms = Var_new + Var_prev.

    This pins the "variance / n" reading of RatioStatistic used above on gbstats' own
    consumer of it (``frequentist_variance``), not on our reading of its source.
    """
    n_a, y_a = _users(11, 4_000, weighted=False)
    n_b, y_b = _users(12, 3_000, weighted=True)
    prev: RateEstimate = ratio_rate(ClusterSums.from_users(n_a, y_a))
    new: RateEstimate = ratio_rate(ClusterSums.from_users(n_b, y_b))
    test = TwoSidedTTest(
        _gbstats_ratio(n_a, y_a),
        _gbstats_ratio(n_b, y_b),
        FrequentistConfig(difference_type="absolute"),
    )
    assert float(test.point_estimate) == pytest.approx(new.rate - prev.rate, rel=REL)
    assert float(test.variance) == pytest.approx(new.variance + prev.variance, rel=REL)


def test_single_user_is_where_ratio_variances_part() -> None:
    """Documented divergence: one user gives gbstats variance 0, ours infinite.

    gbstats then treats the arm as zero-variance and returns its uninformative default;
    the project says outright that nothing can be estimated from one user.
    """
    n, y = np.array([4.0]), np.array([1.0])
    assert math.isinf(ratio_rate(ClusterSums.from_users(n, y)).variance)
    assert float(_gbstats_ratio(n, y).variance) == 0


SRM_CASES = [
    ([5_000, 5_000], [0.5, 0.5]),
    ([5_100, 4_900], [0.5, 0.5]),
    ([5_300, 4_700], [0.5, 0.5]),
    ([9_900, 100], [0.99, 0.01]),
    ([9_870, 130], [0.99, 0.01]),
    ([98_800, 1_200], [0.99, 0.01]),
    ([99_300, 700], [0.99, 0.01]),
    ([5_600, 4_400], [0.5, 0.5]),
    ([0, 10], [0.5, 0.5]),
    ([3_300, 3_350, 3_350], [1 / 3, 1 / 3, 1 / 3]),
    ([2_000, 3_100, 4_900], [0.2, 0.3, 0.5]),
    ([700, 1_000, 1_000, 7_300], [0.1, 0.1, 0.1, 0.7]),
]


def _spotify_srm(users: list[int], shares: list[float]) -> float:
    arms = [f"arm{k}" for k in range(len(users))]
    frame = pd.DataFrame({"arm": arms, "users": users})
    p_value, _ = sample_ratio_test(
        frame,
        all_group_columns="arm",
        denominator="users",
        expected_proportions=dict(zip(arms, shares, strict=True)),
    )
    return float(p_value)


@pytest.mark.parametrize(("users", "shares"), SRM_CASES)
def test_srm_matches_gbstats_and_spotify(users: list[int], shares: list[float]) -> None:
    """srm_p_value = gbstats' check_srm = spotify-confidence's sample_ratio_test.

    All three are Pearson's χ² goodness of fit on K − 1 degrees of freedom. gbstats and
    ours agree to 1e-9 relative even far in the tail (both use the survival function);
    spotify's 1 − cdf is compared with an absolute 1e-12 allowance as well.
    """
    ours = srm_p_value(users, shares)
    assert ours == pytest.approx(float(check_srm(users, shares)), rel=REL)
    assert ours == pytest.approx(_spotify_srm(users, shares), rel=REL, abs=1e-12)


def test_srm_reference_cases_cover_both_verdicts() -> None:
    """The cases above include clear mismatches (p < 1e-10) and clean splits (p > 0.1)."""
    p_values = [srm_p_value(users, shares) for users, shares in SRM_CASES]
    assert min(p_values) < 1e-10
    assert sum(p > 0.1 for p in p_values) >= 3
    # 99/1 exactly on its split, and a 1 % arm 30 % too large, at 10k users.
    assert srm_p_value([9_900, 100], [0.99, 0.01]) == 1.0
    assert srm_p_value([9_870, 130], [0.99, 0.01]) < 0.01


def test_srm_with_no_users_matches_gbstats() -> None:
    """No users at all: p = 1 for ours and gbstats (spotify divides by the zero total)."""
    assert srm_p_value([0, 0], [0.99, 0.01]) == 1.0
    assert check_srm([0, 0], [0.99, 0.01]) == 1
