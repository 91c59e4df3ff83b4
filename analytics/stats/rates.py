"""Per-version rates: the user-clustered ratio estimator and Horvitz–Thompson estimates.

Why: one user may hold several conversations, so conversations are not independent
trials; the rate sum(y)/sum(n) over users is a ratio of two means whose variance comes
from the delta method with the user as the unit (Deng, Knoblich & Lu, "Applying the
Delta Method in Metric Analytics", KDD 2018). Label-based counts come from a
risk-weighted sample, so each labelled conversation counts 1/π, its inverse inclusion
probability (Horvitz & Thompson, JASA 1952); the naive rate of the sample is biased
toward whatever the sampler favoured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.stats.exceptions import StatsInputError


@dataclass(frozen=True, slots=True)
class RateEstimate:
    """A rate of one version for one problem type or guardrail.

    ``events`` is the denominator (conversations served), ``positives`` the
    (possibly weighted) numerator, ``units`` the number of independent units behind
    the variance (users for the ratio estimator, conversations for plain HT).
    ``effective_positives`` is Kish's effective count (Σy)²/Σy_i² over units: the
    number of independent unit-weight events the numerator is worth (a labelled
    sample weighted 1/π = 100 is one event, not 100; a user with three problem
    conversations is less than three). NaN when unknown: ``positives`` stands in.
    """

    rate: float
    variance: float
    events: float
    units: int
    positives: float
    effective_positives: float = math.nan

    @property
    def std_error(self) -> float:
        return math.sqrt(self.variance)

    @property
    def event_count(self) -> float:
        """Effective positives when known, else the (weighted) positives."""
        return self.positives if math.isnan(self.effective_positives) else self.effective_positives


def kish_effective(total: float, sum_sq: float) -> float:
    """(Σy)²/Σy²: the effective number of unit-weight events behind a weighted total."""
    return total * total / sum_sq if sum_sq > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ClusterSums:
    """Sufficient statistics of per-user aggregates (n_i served, y_i with the problem).

    A warehouse query can return these six numbers per version and type
    (``count()``, ``sum(n)``, ``sum(y)``, ``sum(n*n)``, ``sum(y*y)``, ``sum(n*y)``)
    instead of one row per user. ``y`` may be weighted (e.g. sum of 1/π per user).
    """

    users: int
    n: float
    y: float
    nn: float
    yy: float
    ny: float

    @classmethod
    def from_users(cls, n: npt.ArrayLike, y: npt.ArrayLike) -> ClusterSums:
        """Sums over per-user arrays: n[i] conversations served, y[i] with the problem."""
        n_arr = np.asarray(n, dtype=np.float64)
        y_arr = np.asarray(y, dtype=np.float64)
        if n_arr.shape != y_arr.shape or n_arr.ndim != 1:
            msg = f"n and y must be 1-d arrays of one length, got {n_arr.shape} and {y_arr.shape}"
            raise StatsInputError(msg)
        if np.any(n_arr < 0) or np.any(y_arr < 0):
            msg = "per-user counts n and y must be >= 0"
            raise StatsInputError(msg)
        return cls(
            users=int(n_arr.size),
            n=float(n_arr.sum()),
            y=float(y_arr.sum()),
            nn=float(n_arr @ n_arr),
            yy=float(y_arr @ y_arr),
            ny=float(n_arr @ y_arr),
        )


def ratio_rate(sums: ClusterSums) -> RateEstimate:
    """Rate R = Σy/Σn with its user-clustered delta-method variance.

    Var(R) ≈ m/(m-1) · Σ_i (y_i − R·n_i)² / (Σ_i n_i)², with m users: the linearised
    residual y_i − R·n_i of each user carries the whole within-user correlation. The
    residual sum is expanded as Σyy − 2R·Σny + R²·Σnn so sufficient statistics suffice.
    With no conversation the rate is 0 and the variance infinite; with one user the
    variance is infinite (nothing to estimate it from).
    """
    if sums.users < 0 or sums.n < 0 or sums.y < 0:
        msg = f"cluster sums must be >= 0, got {sums}"
        raise StatsInputError(msg)
    effective = kish_effective(sums.y, sums.yy)
    if sums.n == 0:
        return RateEstimate(0.0, math.inf, 0.0, sums.users, sums.y, effective)
    rate = sums.y / sums.n
    if sums.users < 2:
        return RateEstimate(rate, math.inf, sums.n, sums.users, sums.y, effective)
    residual_ss = max(0.0, sums.yy - 2 * rate * sums.ny + rate * rate * sums.nn)
    m = sums.users
    variance = m / (m - 1) * residual_ss / (sums.n * sums.n)
    return RateEstimate(rate, variance, sums.n, m, sums.y, effective)


def ratio_rate_from_users(n: npt.ArrayLike, y: npt.ArrayLike) -> RateEstimate:
    """``ratio_rate`` from per-user arrays; see ``ClusterSums.from_users``."""
    return ratio_rate(ClusterSums.from_users(n, y))


@dataclass(frozen=True, slots=True)
class HTTotal:
    """A Horvitz–Thompson estimate of a population total and its variance."""

    total: float
    variance: float


def horvitz_thompson_total(y: npt.ArrayLike, pi: npt.ArrayLike) -> HTTotal:
    """Estimate Σ y over all conversations from a Poisson sample with inclusion probs π.

    total = Σ_s y_k / π_k over the sampled (labelled) conversations; unbiased whenever
    every conversation has π_k > 0. Under Poisson sampling (independent inclusion,
    which the deterministic hash(salt, id) < p sampler is, up to the hash) the unbiased
    variance estimate is Σ_s (1 − π_k) / π_k² · y_k² (Särndal, Swensson & Wretman,
    "Model Assisted Survey Sampling", 1992, §3.2).
    """
    y_arr = np.asarray(y, dtype=np.float64)
    pi_arr = np.asarray(pi, dtype=np.float64)
    if y_arr.shape != pi_arr.shape or y_arr.ndim != 1:
        msg = f"y and pi must be 1-d arrays of one length, got {y_arr.shape} and {pi_arr.shape}"
        raise StatsInputError(msg)
    if np.any(~(pi_arr > 0)) or np.any(pi_arr > 1):
        msg = "inclusion probabilities pi must lie in (0, 1]; a conversation with pi = 0 "
        msg += "can never be sampled and makes every total unestimable"
        raise StatsInputError(msg)
    weighted = y_arr / pi_arr
    total = float(weighted.sum())
    variance = float(((1 - pi_arr) * weighted * weighted).sum())
    return HTTotal(total, variance)


def horvitz_thompson_rate(
    y: npt.ArrayLike, pi: npt.ArrayLike, *, served: float, units: int | None = None
) -> RateEstimate:
    """Problem rate from labelled sampled conversations: HT total / conversations served.

    ``y`` is 1 for a labelled conversation with the problem (0 otherwise), ``pi`` its
    stored inclusion probability, ``served`` every conversation the version served.

    The variance is that of the mean of z_k = I_k·y_k/π_k over all served conversations
    (I_k = 1 when sampled): both the sampling design's noise and the outcome's own
    (a conversation's problem is itself random), Var = (Σ z² − N·R²) / (N(N − 1)) with
    Σ z² = Σ_s y²/π². With π = 1 everywhere this is the binomial R(1 − R)/(N − 1), not
    the design-only Σ(1 − π)y²/π² / N², which is 0 there. ``units`` defaults to
    ``served``; for user clustering pass per-user sums of y/π to ``ratio_rate``.
    """
    if served <= 0:
        msg = f"served must be > 0, got {served}"
        raise StatsInputError(msg)
    ht = horvitz_thompson_total(y, pi)
    y_arr = np.asarray(y, dtype=np.float64)
    z = y_arr / np.asarray(pi, dtype=np.float64)
    sum_z2 = float(z @ z)
    rate = ht.total / served
    if served > 1:
        variance = max(0.0, (sum_z2 - served * rate * rate) / (served * (served - 1)))
    else:
        variance = math.inf
    return RateEstimate(
        rate=rate,
        variance=variance,
        events=float(served),
        units=int(served) if units is None else units,
        positives=ht.total,
        effective_positives=kish_effective(ht.total, sum_z2),
    )
