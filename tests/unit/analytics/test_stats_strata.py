"""Rates stratified by rollout step, the labelling-coverage gate, and the simulated rollouts."""

import numpy as np
import pytest

from analytics.stats import (
    ArmRates,
    ComparisonSettings,
    Decision,
    HealthCheck,
    StratifiedSums,
    Verdict,
    compare_versions,
    ratio_rate_from_users,
    stratified_rate,
    stratum_weights,
)
from analytics.stats.simulation import (
    ClusteredTraffic,
    RolloutStep,
    SimulatedMetric,
    simulate_rollout,
)
from analytics.stats.verdict import LabelCoverage

HEALTHY = HealthCheck(srm_p_value=0.5, multiple_exposure_share=0.0, reasons=())


def test_one_step_is_the_clustered_ratio_estimator() -> None:
    rng = np.random.default_rng(0)
    n = 1 + rng.poisson(1.0, 500)
    y = rng.binomial(n, 0.1)
    one = stratified_rate(StratifiedSums.from_users(n, y), [1.0])
    plain = ratio_rate_from_users(n, y)
    assert one.rate == pytest.approx(plain.rate)
    assert one.variance == pytest.approx(plain.variance)


def test_variance_counts_a_returning_users_steps_together() -> None:
    """The closed form equals the per-user linearisation u_i = Σ_s w_s/N_s (y_is − R_s n_is)."""
    rng = np.random.default_rng(1)
    users, steps = 400, 3
    n = rng.poisson(1.0, (users, steps)).astype(float)
    n[n.sum(axis=1) == 0, 0] = 1
    propensity = rng.gamma(0.5, 2.0, users)[:, None]  # strong within-user correlation
    y = rng.binomial(n.astype(int), np.clip(0.1 * propensity, 0, 1)).astype(float)
    sums = StratifiedSums.from_users(n, y)
    w = np.array([0.2, 0.3, 0.5])
    got = stratified_rate(sums, w)
    r = y.sum(axis=0) / n.sum(axis=0)
    u = ((y - r * n) * (w / n.sum(axis=0))).sum(axis=1)
    expected = users / (users - 1) * (u @ u)
    assert got.rate == pytest.approx(w @ r)
    assert got.variance == pytest.approx(expected)
    independent = sum(
        (w[s] / n[:, s].sum()) ** 2 * ((y[:, s] - r[s] * n[:, s]) ** 2).sum() for s in range(steps)
    )
    assert got.variance > independent  # the cross-step products matter here


def test_stratification_removes_drift_between_steps() -> None:
    """Simpson: rates 4 → 6 % over steps of 5 % and 50 %; the canary is mostly late traffic."""
    prev_n = np.array([[19_000.0, 10_000.0]])
    new_n = np.array([[1_000.0, 10_000.0]])
    prev = StratifiedSums.from_arrays(
        distinct_users=29_000, users=prev_n[0], n=prev_n[0], y=prev_n[0] * [0.04, 0.06],
        nn=np.diag(prev_n[0]), yy=np.diag(prev_n[0] * [0.04, 0.06]),
        yn=np.diag(prev_n[0] * [0.04, 0.06]),
    )  # fmt: skip
    new = StratifiedSums.from_arrays(
        distinct_users=11_000, users=new_n[0], n=new_n[0], y=new_n[0] * [0.04, 0.06],
        nn=np.diag(new_n[0]), yy=np.diag(new_n[0] * [0.04, 0.06]),
        yn=np.diag(new_n[0] * [0.04, 0.06]),
    )  # fmt: skip
    w = stratum_weights(prev, new)
    assert stratified_rate(prev, w).rate == pytest.approx(stratified_rate(new, w).rate)
    pooled_prev = prev.y[0] + prev.y[1]
    pooled_new = new.y[0] + new.y[1]
    assert pooled_new / sum(new.n) > 1.15 * pooled_prev / sum(prev.n)  # what pooling showed


def test_no_target_verdict_until_both_arms_are_labelled() -> None:
    def pair(coverage: LabelCoverage) -> ArmRates:
        prev = ratio_rate_from_users(np.ones(20_000), np.r_[np.ones(1_000), np.zeros(19_000)])
        new = ratio_rate_from_users(np.ones(20_000), np.r_[np.ones(300), np.zeros(19_700)])
        return ArmRates(prev, new, coverage=coverage)

    low = compare_versions(
        {"t": pair(LabelCoverage(0.95, 0.6))}, {}, HEALTHY, previously_met={"t": 0}
    )
    assert low.targets["t"].verdict is Verdict.INSUFFICIENT_LABELS
    assert "60%" in low.targets["t"].reason
    assert not low.targets["t"].solved_criteria_met
    full = compare_versions(
        {"t": pair(LabelCoverage(0.95, 0.92))}, {}, HEALTHY, previously_met={"t": 0}
    )
    assert full.targets["t"].verdict is Verdict.SOLVED_CANDIDATE


def _metrics() -> list[SimulatedMetric]:
    return [SimulatedMetric(f"t{i}", r) for i, r in enumerate((0.02, 0.05, 0.10))]


def _false_rates(traffic: ClusteredTraffic, runs: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    roll_back = solved = 0
    for _ in range(runs):
        looks = simulate_rollout(traffic, rng=rng)
        roll_back += any(look.decision is Decision.ROLL_BACK for look in looks)
        solved += any(
            r.verdict is Verdict.SOLVED_CANDIDATE for look in looks for r in look.targets.values()
        )
    return roll_back / runs, solved / runs


def test_aa_at_a_one_percent_canary_neither_rolls_back_nor_solves() -> None:
    """The audit's case: 1 % canary; it rolled back 20 % of A/A runs before (60 runs here)."""
    traffic = ClusteredTraffic(_metrics(), [RolloutStep(0.01, 6)], users_per_batch=10_000)
    roll_back, solved = _false_rates(traffic, runs=60, seed=3)
    assert roll_back <= 0.05
    assert solved <= 0.05


def test_aa_with_drift_across_steps_stays_quiet() -> None:
    steps = [RolloutStep(0.05, 3, 1.0), RolloutStep(0.25, 3, 1.25), RolloutStep(0.5, 3, 1.5)]
    traffic = ClusteredTraffic(_metrics(), steps, users_per_batch=2_000)
    roll_back, solved = _false_rates(traffic, runs=60, seed=4)
    assert roll_back <= 0.05
    assert solved <= 0.05


def test_a_real_regression_at_fifty_percent_rolls_back() -> None:
    metrics = [SimulatedMetric("t0", 0.05, relative_effect=0.6), *_metrics()[1:]]
    traffic = ClusteredTraffic(metrics, [RolloutStep(0.5, 8)], users_per_batch=1_000)
    rng = np.random.default_rng(5)
    hits = [
        any(look.decision is Decision.ROLL_BACK for look in simulate_rollout(traffic, rng=rng))
        for _ in range(20)
    ]
    assert np.mean(hits) >= 0.8


def test_label_lag_holds_target_verdicts_until_labelled() -> None:
    metrics = [SimulatedMetric("t0", 0.05, labelled=True)]
    traffic = ClusteredTraffic(
        metrics, [RolloutStep(0.5, 4)], users_per_batch=1_000, label_delay_probability=0.7
    )
    looks = simulate_rollout(traffic, rng=np.random.default_rng(6), settings=ComparisonSettings())
    first = looks[0].targets["t0"]
    assert first.coverage is not None
    assert first.coverage.lowest < 0.9
    assert first.verdict is Verdict.INSUFFICIENT_LABELS
