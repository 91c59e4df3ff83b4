"""Rates stratified by rollout step: compare only concurrent data, then combine the steps.

Why: a rollout moves through steps with different splits (1 → 5 → 25 → 50 %). Pooling
all of a version's conversations mixes steps in different proportions per arm (the
canary's data is mostly from late steps, the control's from early ones), so any drift in
the base rate over time becomes a spurious difference (Simpson's paradox). Within a step
both arms run at the same time; comparing them there and combining the steps' contrasts
with fixed weights removes the drift.

Each arm's combined rate is R = Σ_s w_s·R_s with R_s = Σy_s/Σn_s (the user-clustered
ratio estimator of step s) and weights w_s ∝ N_new,s·N_prev,s/(N_new,s + N_prev,s), the
precision of a step's difference under equal variances (the Cochran–Mantel–Haenszel
idea). A user may hold conversations in several steps, so the variance linearises the
whole estimate per user, u_i = Σ_s w_s/N_s·(y_is − R_s·n_is), and sums u_i² with the
cross-step products Σ_i y_is·y_it, y_is·n_it, n_is·n_it: a returning user's correlated
conversations across steps are counted, not assumed independent. With one step this is
exactly ``ratio_rate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analytics.stats.exceptions import StatsInputError
from analytics.stats.rates import RateEstimate, kish_effective


@dataclass(frozen=True, slots=True)
class StratifiedSums:
    """One arm's sufficient statistics of one metric over S steps (strata).

    ``n[s]``, ``y[s]``: conversations and (weighted) positives in step s; ``users[s]``
    users with a conversation there, ``distinct_users`` users in any step;
    ``nn[s][t]`` = Σ_i n_is·n_it, ``yy[s][t]`` = Σ_i y_is·y_it, ``yn[s][t]`` = Σ_i y_is·n_it.
    """

    distinct_users: int
    users: tuple[float, ...]
    n: tuple[float, ...]
    y: tuple[float, ...]
    nn: tuple[tuple[float, ...], ...]
    yy: tuple[tuple[float, ...], ...]
    yn: tuple[tuple[float, ...], ...]

    @property
    def strata(self) -> int:
        return len(self.n)

    @classmethod
    def empty(cls, strata: int) -> StratifiedSums:
        zeros = (0.0,) * strata
        return cls(0, zeros, zeros, zeros, (zeros,) * strata, (zeros,) * strata, (zeros,) * strata)

    @classmethod
    def from_users(cls, n: npt.ArrayLike, y: npt.ArrayLike) -> StratifiedSums:
        """Sums over per-user × per-step arrays (users, S): n conversations, y positives."""
        n_arr = np.asarray(n, dtype=np.float64)
        y_arr = np.asarray(y, dtype=np.float64)
        if n_arr.ndim == 1 and y_arr.ndim == 1:
            n_arr, y_arr = n_arr[:, None], y_arr[:, None]
        if n_arr.shape != y_arr.shape or n_arr.ndim != 2:
            msg = (
                "n and y must be (users, steps) arrays of one shape, "
                f"got {n_arr.shape}, {y_arr.shape}"
            )
            raise StatsInputError(msg)
        if np.any(n_arr < 0) or np.any(y_arr < 0):
            msg = "per-user counts n and y must be >= 0"
            raise StatsInputError(msg)
        active = n_arr.sum(axis=1) > 0
        return cls.from_arrays(
            distinct_users=int(active.sum()),
            users=(n_arr > 0).sum(axis=0),
            n=n_arr.sum(axis=0),
            y=y_arr.sum(axis=0),
            nn=n_arr.T @ n_arr,
            yy=y_arr.T @ y_arr,
            yn=y_arr.T @ n_arr,
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        distinct_users: int,
        users: npt.ArrayLike,
        n: npt.ArrayLike,
        y: npt.ArrayLike,
        nn: npt.ArrayLike,
        yy: npt.ArrayLike,
        yn: npt.ArrayLike,
    ) -> StratifiedSums:
        """From numpy vectors (S) and matrices (S, S), e.g. a warehouse query's arrays."""

        def vec(a: npt.ArrayLike) -> tuple[float, ...]:
            return tuple(float(v) for v in np.asarray(a, dtype=np.float64).ravel())

        def mat(a: npt.ArrayLike, s: int) -> tuple[tuple[float, ...], ...]:
            m = np.asarray(a, dtype=np.float64).reshape(s, s)
            return tuple(vec(row) for row in m)

        n_vec = vec(n)
        s = len(n_vec)
        return cls(distinct_users, vec(users), n_vec, vec(y), mat(nn, s), mat(yy, s), mat(yn, s))


def stratum_weights(prev: StratifiedSums, new: StratifiedSums) -> npt.NDArray[np.float64]:
    """w_s ∝ N_prev,s·N_new,s/(N_prev,s + N_new,s), summing to 1 (all 0 if no step has both)."""
    if prev.strata != new.strata:
        msg = f"both arms need the same steps, got {prev.strata} and {new.strata}"
        raise StatsInputError(msg)
    a = np.asarray(prev.n)
    b = np.asarray(new.n)
    total = a + b
    h: npt.NDArray[np.float64] = np.divide(
        a * b, total, out=np.zeros_like(total, dtype=np.float64), where=total > 0
    )
    return h / h.sum() if h.sum() > 0 else h


def effective_units(prev_users: float, new_users: float) -> float:
    """4·a·b/(a + b): both arms' users at 50/50, about 4× the smaller arm when lopsided.

    The variance of a difference of two means scales with 1/a + 1/b; this is the total
    of a balanced experiment with the same 1/a + 1/b, so a 1 % canary's evidence is sized
    by its own users, not by the control's.
    """
    if prev_users <= 0 or new_users <= 0:
        return 0.0
    return 4 * prev_users * new_users / (prev_users + new_users)


def stratified_rate(sums: StratifiedSums, weights: npt.ArrayLike) -> RateEstimate:
    """The arm's combined rate Σ w_s·R_s and its user-clustered variance (module docstring).

    Steps with weight 0 (a step where either arm is empty) are left out. With no weighted
    step the rate is 0 and the variance infinite; with fewer than two users, infinite.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = np.asarray(sums.n)
    y = np.asarray(sums.y)
    if w.shape != n.shape:
        msg = f"need one weight per step, got {w.shape} for {n.shape}"
        raise StatsInputError(msg)
    used = (w > 0) & (n > 0)
    events = float(n[used].sum())
    positives = float(y[used].sum())
    yy = np.asarray(sums.yy)
    effective = kish_effective(positives, float(yy[np.ix_(used, used)].sum()))
    m = sums.distinct_users
    if not used.any():
        return RateEstimate(0.0, math.inf, events, m, positives, effective)
    ws = np.where(used, w, 0.0)
    ws = ws / ws.sum()
    r = np.divide(y, n, out=np.zeros_like(y), where=used)
    rate = float(ws @ r)
    if m < 2:
        return RateEstimate(rate, math.inf, events, m, positives, effective)
    c = np.divide(ws, n, out=np.zeros_like(ws), where=used)
    nn = np.asarray(sums.nn)
    yn = np.asarray(sums.yn)
    # Σ_i u_i² = Σ_st c_s c_t (YY_st − R_t·YN_st − R_s·YN_ts + R_s R_t·NN_st)
    inner = yy - yn * r[None, :] - (yn * r[None, :]).T + np.outer(r, r) * nn
    residual_ss = max(0.0, float(c @ inner @ c))
    variance = m / (m - 1) * residual_ss
    return RateEstimate(rate, variance, events, m, positives, effective)
