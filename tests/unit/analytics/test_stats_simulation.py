"""End-to-end error rates of the verdicts under continuous looking (simulated rollouts).

Clustered traffic (``analytics.stats.simulation``): users with 1 + NB conversations,
log-normal propensities, returning users; five problem types at 2–10 % and two guardrails;
one look per traffic batch. The full validation at every split is
``benchmarks/stats_validation.py``; these are its smaller, CI-sized checks.
"""

from collections.abc import Sequence

import numpy as np

from analytics.stats import Comparison, ComparisonSettings, Decision, Direction, Verdict
from analytics.stats.simulation import (
    ClusteredTraffic,
    RolloutStep,
    SimulatedMetric,
    simulate_rollout,
)

ALPHA = 0.05
TOLERANCE = 0.03  # ~2 standard errors of a 5 % rate over 100 runs
TYPES = ("objection", "cta_timing", "knowledge", "over_promise", "policy")
BASE_RATES = (0.02, 0.04, 0.06, 0.08, 0.10)
GUARDRAILS = (
    SimulatedMetric("risk_reject_rate", 0.05, guardrail=True),
    SimulatedMetric("conversion_rate", 0.10, direction=Direction.LOWER_IS_WORSE, guardrail=True),
)


def _traffic(
    effects: Sequence[float], users_per_batch: int, share: float = 0.5
) -> ClusteredTraffic:
    targets = [
        SimulatedMetric(name, rate, effect)
        for name, rate, effect in zip(TYPES, BASE_RATES, effects, strict=True)
    ]
    return ClusteredTraffic([*targets, *GUARDRAILS], [RolloutStep(share, 10)], users_per_batch)


def _runs(
    traffic: ClusteredTraffic, runs: int, seed: int, settings: ComparisonSettings
) -> list[list[Comparison]]:
    rng = np.random.default_rng(seed)
    return [simulate_rollout(traffic, rng=rng, settings=settings) for _ in range(runs)]


def _ever(runs: list[list[Comparison]], metric: str, verdict: Verdict) -> float:
    """Share of runs in which ``metric`` got ``verdict`` at some look."""

    def hit(look: Comparison) -> bool:
        result = look.targets.get(metric) or look.guardrails[metric]
        return result.verdict is verdict

    return float(np.mean([any(hit(look) for look in looks) for looks in runs]))


def test_aa_rolls_back_and_solves_at_most_alpha_of_the_time() -> None:
    runs = _runs(_traffic([0.0] * 5, 1_000), runs=100, seed=1, settings=ComparisonSettings())
    roll_back = np.mean([any(x.decision is Decision.ROLL_BACK for x in looks) for looks in runs])
    assert roll_back <= ALPHA + TOLERANCE
    for name in TYPES:
        assert _ever(runs, name, Verdict.SOLVED_CANDIDATE) <= ALPHA


def test_aa_each_metric_at_alpha_without_the_familywise_split() -> None:
    settings = ComparisonSettings(familywise_regression=False)
    runs = _runs(_traffic([0.0] * 5, 1_000), runs=100, seed=2, settings=settings)
    for metric in (*TYPES, "risk_reject_rate", "conversion_rate"):
        assert _ever(runs, metric, Verdict.REGRESSED) <= ALPHA + TOLERANCE


def test_a_drop_of_exactly_delta_is_called_solved_at_most_alpha_of_the_time() -> None:
    """The least favourable null for "solved": every type down by exactly δ = 20 %."""
    runs = _runs(_traffic([-0.2] * 5, 4_000), runs=40, seed=3, settings=ComparisonSettings())
    for name in TYPES:
        assert _ever(runs, name, Verdict.SOLVED_CANDIDATE) <= ALPHA + TOLERANCE


def test_power_a_large_reduction_is_solved_in_most_runs() -> None:
    """Two trained types down 60 %; 4 000 users a batch (~80 000 conversations per arm)."""
    effects = [0.0, 0.0, 0.0, -0.6, -0.6]
    runs = _runs(_traffic(effects, 4_000), runs=20, seed=4, settings=ComparisonSettings())
    for name in ("over_promise", "policy"):
        assert _ever(runs, name, Verdict.SOLVED_CANDIDATE) >= 0.8
    for name in TYPES[:3]:
        assert _ever(runs, name, Verdict.SOLVED_CANDIDATE) == 0


def test_power_a_doubling_of_a_rare_problem_rolls_back() -> None:
    runs = _runs(
        _traffic([1.0, 0.0, 0.0, 0.0, 0.0], 1_000), runs=20, seed=5, settings=ComparisonSettings()
    )
    assert _ever(runs, "objection", Verdict.REGRESSED) >= 0.8
