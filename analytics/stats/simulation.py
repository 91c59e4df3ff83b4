"""Synthetic canary traffic to validate the verdicts: A/A error rates and power.

Why: the guarantees of the always-valid bounds are asymptotic, and the verdict logic
adds gates, e-BH and the two-look rule on top; simulating the loop end to end, with
several conversations per user and heterogeneous users, is how the tests and
``benchmarks/stats_validation.py`` check the levels hold. Pure numpy, seeded by caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.stats.config import ComparisonSettings
from analytics.stats.health import HealthCheck, check_health
from analytics.stats.rates import ClusterSums, ratio_rate
from analytics.stats.verdict import ArmRates, Comparison, Direction, compare_versions


@dataclass(frozen=True, slots=True)
class SimulatedMetric:
    """A metric's per-conversation rate in prev, and new's relative change to it."""

    name: str
    base_rate: float
    relative_effect: float = 0.0
    direction: Direction = Direction.HIGHER_IS_WORSE
    guardrail: bool = False


@dataclass(frozen=True, slots=True)
class CanaryTraffic:
    """Traffic of one canary: 50/50 split, users arriving evenly between looks.

    Each user has 1 + Poisson(``extra_conversations``) conversations and a propensity
    multiplier ~ Gamma(shape, 1/shape) (mean 1; smaller shape, more heterogeneous users).
    """

    metrics: Sequence[SimulatedMetric]
    users_per_arm_per_look: int
    looks: int
    extra_conversations: float = 0.5
    propensity_shape: float = 2.0


def _arm_sums(
    traffic: CanaryTraffic, rates: npt.NDArray[np.float64], rng: np.random.Generator
) -> list[list[ClusterSums]]:
    """Cumulative ClusterSums per look (outer) and metric (inner) for one arm."""
    users = traffic.users_per_arm_per_look * traffic.looks
    n = 1 + rng.poisson(traffic.extra_conversations, size=users)
    propensity = rng.gamma(traffic.propensity_shape, 1 / traffic.propensity_shape, users)
    p = np.clip(np.outer(propensity, rates), 0, 1)
    y = rng.binomial(n[:, None], p).astype(np.float64)
    nf = n.astype(np.float64)[:, None]
    parts = np.stack(
        [np.broadcast_to(nf, y.shape), y, np.broadcast_to(nf * nf, y.shape), y * y, nf * y]
    )
    per_look = parts.reshape(5, traffic.looks, traffic.users_per_arm_per_look, -1).sum(axis=2)
    cumulative = per_look.cumsum(axis=1)
    step = traffic.users_per_arm_per_look
    return [
        [
            ClusterSums(step * (look + 1), *(float(v) for v in cumulative[:, look, k]))
            for k in range(rates.size)
        ]
        for look in range(traffic.looks)
    ]


def simulate_canary(
    traffic: CanaryTraffic,
    *,
    rng: np.random.Generator,
    settings: ComparisonSettings | None = None,
    health: HealthCheck | None = None,
) -> list[Comparison]:
    """Every look of one simulated canary, each fed the previous look's solved set."""
    cfg = settings or ComparisonSettings()
    base = np.array([m.base_rate for m in traffic.metrics])
    effect = np.array([1 + m.relative_effect for m in traffic.metrics])
    prev_sums = _arm_sums(traffic, base, rng)
    new_sums = _arm_sums(traffic, base * effect, rng)
    looks: list[Comparison] = []
    met: frozenset[str] = frozenset()
    for look in range(traffic.looks):
        users = traffic.users_per_arm_per_look * (look + 1)
        checked = health or check_health([users, users], [0.5, 0.5], users_in_both=0, settings=cfg)
        targets: dict[str, ArmRates] = {}
        guardrails: dict[str, ArmRates] = {}
        for k, metric in enumerate(traffic.metrics):
            pair = ArmRates(
                ratio_rate(prev_sums[look][k]), ratio_rate(new_sums[look][k]), metric.direction
            )
            (guardrails if metric.guardrail else targets)[metric.name] = pair
        result = compare_versions(targets, guardrails, checked, previously_met=met, settings=cfg)
        met = result.solved_criteria_met
        looks.append(result)
    return looks
