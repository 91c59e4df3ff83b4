"""Synthetic rollout traffic to validate the verdicts: A/A error rates and power.

Why: the guarantees of the always-valid bounds are asymptotic, and the verdict logic adds
gates, the exact count test and the two-look rule on top; simulating a rollout end to
end, under a traffic model harder than the loop's own, is how the tests and
``benchmarks/stats_validation.py`` check the levels hold at every split.

The model: users arrive in batches (one look after each batch); each has 1 + NB(r, mean)
conversations, a log-normal propensity (mean 1) that multiplies every rate, and a sticky
bucket in [0, 1). A user's first conversation is in the arrival batch, each further one
lands a geometric number of batches later, so returning users span rollout steps; a
conversation is served by the canary when the user's bucket lies below the step's share
(nested ranges: a step-up moves users from the control to the canary). Rates may drift
from step to step. Label-derived metrics can lag: a conversation's label arrives a
geometric number of batches after it, and unlabelled conversations count 0, as in the
warehouse. Pure numpy, seeded by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.stats.config import ComparisonSettings
from analytics.stats.health import check_health
from analytics.stats.strata import StratifiedSums, stratified_rate, stratum_weights
from analytics.stats.verdict import (
    ArmRates,
    Comparison,
    Direction,
    LabelCoverage,
    StratumCounts,
    compare_versions,
)


@dataclass(frozen=True, slots=True)
class SimulatedMetric:
    """A metric's per-conversation base rate, and the canary's relative change to it.

    ``labelled``: the metric comes from labels, which may lag (``ClusteredTraffic``).
    """

    name: str
    base_rate: float
    relative_effect: float = 0.0
    direction: Direction = Direction.HIGHER_IS_WORSE
    guardrail: bool = False
    labelled: bool = False


@dataclass(frozen=True, slots=True)
class RolloutStep:
    """One step: the canary's share of users, its traffic batches, its rate multiplier."""

    share: float
    batches: int
    drift: float = 1.0


@dataclass(frozen=True, slots=True)
class ClusteredTraffic:
    """Traffic of one rollout (module docstring)."""

    metrics: Sequence[SimulatedMetric]
    steps: Sequence[RolloutStep]
    users_per_batch: int
    extra_conversations_mean: float = 1.0
    extra_conversations_shape: float = 0.7
    propensity_sigma: float = 0.8
    return_probability: float = 0.6
    label_delay_probability: float | None = None
    """Chance a label is still missing one more batch later; None: labels are immediate."""

    @property
    def batches(self) -> int:
        return sum(s.batches for s in self.steps)


@dataclass(frozen=True, slots=True)
class _Conversations:
    user: npt.NDArray[np.int64]
    batch: npt.NDArray[np.int64]
    step: npt.NDArray[np.int64]
    canary: npt.NDArray[np.bool_]
    y: npt.NDArray[np.float64]  # (conversations, metrics)
    labelled_at: npt.NDArray[np.int64]
    users: int
    first_batch: npt.NDArray[np.int64]  # per user: the arrival batch (first conversation)
    first_step: npt.NDArray[np.int64]
    first_canary: npt.NDArray[np.bool_]


def _generate(traffic: ClusteredTraffic, rng: np.random.Generator) -> _Conversations:
    batches = traffic.batches
    step_of_batch = np.repeat(np.arange(len(traffic.steps)), [s.batches for s in traffic.steps])
    shares = np.array([s.share for s in traffic.steps])
    drift = np.array([s.drift for s in traffic.steps])
    users = traffic.users_per_batch * batches
    arrival = np.arange(users) // traffic.users_per_batch
    bucket = rng.random(users)
    sigma = traffic.propensity_sigma
    propensity = rng.lognormal(-sigma * sigma / 2, sigma, users)
    shape = traffic.extra_conversations_shape
    extra = rng.negative_binomial(shape, shape / (shape + traffic.extra_conversations_mean), users)
    count = 1 + extra
    user = np.repeat(np.arange(users), count)
    first = np.concatenate(([0], np.cumsum(count)[:-1]))
    is_first = np.zeros(user.size, dtype=bool)
    is_first[first] = True
    offset = np.where(is_first, 0, rng.geometric(1 - traffic.return_probability, user.size) - 1)
    batch = arrival[user] + offset
    keep = batch < batches
    user, batch = user[keep], batch[keep]
    step = step_of_batch[batch]
    canary = bucket[user] < shares[step]
    base = np.array([m.base_rate for m in traffic.metrics])
    effect = np.array([1 + m.relative_effect for m in traffic.metrics])
    rate = base[None, :] * (propensity[user] * drift[step])[:, None]
    rate = np.where(canary[:, None], rate * effect[None, :], rate)
    y = (rng.random(rate.shape) < np.clip(rate, 0, 1)).astype(np.float64)
    if traffic.label_delay_probability is None:
        labelled_at = batch
    else:
        labelled_at = batch + rng.geometric(1 - traffic.label_delay_probability, batch.size) - 1
    first_step = step_of_batch[arrival]
    first_canary = bucket < shares[first_step]
    return _Conversations(
        user, batch, step, canary, y, labelled_at, users, arrival, first_step, first_canary
    )


class _Arm:
    """One arm's running per-user × per-step counts, fed batch by batch (labels when they land)."""

    def __init__(self, conv: _Conversations, arm: npt.NDArray[np.bool_], strata: int) -> None:
        self._strata = strata
        self._users = conv.users
        metrics = conv.y.shape[1]
        self.n = np.zeros((conv.users, strata))
        self.y = np.zeros((metrics, conv.users, strata))
        self.served = 0
        self.labelled = 0
        self._cell = conv.user * strata + conv.step
        self._by_batch = _group(conv.batch, arm)
        self._by_label = _group(conv.labelled_at, arm)

    def _add(self, rows: npt.NDArray[np.int64], values: npt.NDArray[np.float64] | None) -> None:
        size = self._users * self._strata
        cell = self._cell[rows]
        if values is None:
            counts = np.bincount(cell, minlength=size)
            self.n += counts.reshape(self._users, self._strata)
            return
        for k in range(values.shape[1]):
            if values[:, k].any():
                add = np.bincount(cell, weights=values[:, k], minlength=size)
                self.y[k] += add.reshape(self._users, self._strata)

    def advance(
        self, look: int, at_batch: npt.NDArray[np.float64], at_label: npt.NDArray[np.float64]
    ) -> None:
        served = self._by_batch.get(look, np.zeros(0, dtype=np.int64))
        labelled = self._by_label.get(look, np.zeros(0, dtype=np.int64))
        self.served += served.size
        self.labelled += labelled.size
        self._add(served, None)
        self._add(served, at_batch[served])
        self._add(labelled, at_label[labelled])

    def sums(self) -> list[StratifiedSums]:
        active = self.n.sum(axis=1) > 0
        n = self.n[active]
        ys = self.y[:, active]
        nn = n.T @ n
        yy = np.einsum("mus,mut->mst", ys, ys)
        yn = np.einsum("mus,ut->mst", ys, n)
        users = (n > 0).sum(axis=0)
        return [
            StratifiedSums.from_arrays(
                distinct_users=int(active.sum()),
                users=users,
                n=n.sum(axis=0),
                y=ys[k].sum(axis=0),
                nn=nn,
                yy=yy[k],
                yn=yn[k],
            )
            for k in range(ys.shape[0])
        ]

    @property
    def coverage(self) -> float:
        return self.labelled / self.served if self.served else 1.0


def _group(
    key: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]
) -> dict[int, npt.NDArray[np.int64]]:
    """Row indices within ``mask``, grouped by ``key``."""
    rows = np.flatnonzero(mask)
    order = rows[np.argsort(key[rows], kind="stable")]
    keys, starts = np.unique(key[order], return_index=True)
    return dict(zip(keys.tolist(), np.split(order, starts[1:]), strict=True))


def _health_users(conv: _Conversations, look: int, step: int) -> tuple[int, int]:
    """Users first seen in the current step, by the arm of that first conversation."""
    in_step = (conv.first_batch <= look) & (conv.first_step == step)
    canary = conv.first_canary[in_step]
    return int((~canary).sum()), int(canary.sum())


def _pairs(
    traffic: ClusteredTraffic, prev_arm: _Arm, new_arm: _Arm
) -> tuple[dict[str, ArmRates], dict[str, ArmRates]]:
    strata = len(traffic.steps)
    prev, new = prev_arm.sums(), new_arm.sums()
    coverage = LabelCoverage(prev_arm.coverage, new_arm.coverage)
    targets: dict[str, ArmRates] = {}
    guardrails: dict[str, ArmRates] = {}
    for k, metric in enumerate(traffic.metrics):
        p, q = prev[k], new[k]
        weights = stratum_weights(p, q)
        counts = tuple(
            StratumCounts(p.n[s], p.y[s], q.n[s], q.y[s]) for s in range(strata) if weights[s] > 0
        )
        pair = ArmRates(
            stratified_rate(p, weights),
            stratified_rate(q, weights),
            metric.direction,
            exact_counts=True,
            strata=counts,
            coverage=coverage if metric.labelled else None,
        )
        (guardrails if metric.guardrail else targets)[metric.name] = pair
    return targets, guardrails


def simulate_rollout(
    traffic: ClusteredTraffic,
    *,
    rng: np.random.Generator,
    settings: ComparisonSettings | None = None,
) -> list[Comparison]:
    """Every look (one per batch) of one simulated rollout, each fed the previous look's."""
    cfg = settings or ComparisonSettings()
    conv = _generate(traffic, rng)
    strata = len(traffic.steps)
    labelled = np.array([m.labelled for m in traffic.metrics])
    at_batch = np.where(labelled[None, :], 0.0, conv.y)
    at_label = np.where(labelled[None, :], conv.y, 0.0)
    prev_arm, new_arm = _Arm(conv, ~conv.canary, strata), _Arm(conv, conv.canary, strata)
    step_of_batch = np.repeat(np.arange(strata), [s.batches for s in traffic.steps])
    looks: list[Comparison] = []
    met: dict[str, float] = {}
    for look in range(traffic.batches):
        step = int(step_of_batch[look])
        share = traffic.steps[step].share
        prev_arm.advance(look, at_batch, at_label)
        new_arm.advance(look, at_batch, at_label)
        control, canary = _health_users(conv, look, step)
        health = check_health([control, canary], [1 - share, share], users_in_both=0, settings=cfg)
        targets, guardrails = _pairs(traffic, prev_arm, new_arm)
        result = compare_versions(targets, guardrails, health, previously_met=met, settings=cfg)
        met = dict(result.solved_since)
        looks.append(result)
    return looks
