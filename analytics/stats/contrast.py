"""Two-arm contrasts of rates: difference, relative change, and their always-valid tests.

Why: every verdict is a statement about new versus prev. Each is phrased as a linear
contrast L_q = rate_new − q·rate_prev, whose variance Var_new + q²·Var_prev (independent
arms) is well defined even when one rate is 0, unlike the delta-method variance of the
ratio itself:

- difference new − prev: q = 1;
- "relative change below c" (new/prev − 1 < c) ⇔ L_{1+c} < 0, so solved (c = −δ) and
  non-inferiority (c = ±margin) are one-sided tests of a contrast;
- the interval for the relative change inverts those tests over q (Fieller, "Some
  problems in interval estimation", JRSS B 1954): it is exactly the set of c whose
  contrast is not rejected, so bound and test can never disagree.

n for the sequences is the effective number of users, 4·a·b/(a + b) for a and b users
per arm (``strata.effective_units``): both arms' users at 50/50, as in the two-sample
case of Waudby-Smith et al. (2024) and gbstats, but about four times the smaller arm
when the split is lopsided, so a 1 % canary's boundary is as wide as its own data
warrants, not as tight as the control's 99 % would make it.

An arm with variance 0 (no event at all, or every unit alike) is not taken as certain:
its variance is floored at that of one event of the pooled mean weight in its
conversations, (w̄/N)² (the rule-of-three idea). So a 0/300 canary never makes a
contrast's variance vanish, and two empty arms never give a zero-width interval.
"""

from __future__ import annotations

import math
from dataclasses import replace
from enum import StrEnum

from analytics.stats.rates import RateEstimate
from analytics.stats.sequential import (
    Interval,
    Side,
    boundary_multiplier,
    confidence_sequence,
    e_value,
)
from analytics.stats.strata import effective_units


class Alternative(StrEnum):
    """The alternative of a one-sided contrast test: new below or above q·prev."""

    LESS = "less"
    GREATER = "greater"


def units(prev: RateEstimate, new: RateEstimate) -> float:
    """Effective independent units behind a two-arm comparison (module docstring)."""
    return effective_units(prev.units, new.units)


def mean_event_weight(prev: RateEstimate, new: RateEstimate) -> float:
    """Pooled weight of one event: Σy / effective events over both arms; 1 without events."""
    events = prev.event_count + new.event_count
    return (prev.positives + new.positives) / events if events > 0 else 1.0


def floored(prev: RateEstimate, new: RateEstimate) -> tuple[RateEstimate, RateEstimate]:
    """Both arms with a zero variance raised to that of one pooled-weight event."""
    weight = mean_event_weight(prev, new)

    def floor(arm: RateEstimate) -> RateEstimate:
        if arm.variance > 0 or arm.events <= 0:
            return arm
        return replace(arm, variance=(weight / arm.events) ** 2)

    return floor(prev), floor(new)


def contrast(prev: RateEstimate, new: RateEstimate, *, ratio: float = 1.0) -> tuple[float, float]:
    """L = new − ratio·prev and its variance Var_new + ratio²·Var_prev (zero variances floored)."""
    prev, new = floored(prev, new)
    return new.rate - ratio * prev.rate, new.variance + ratio * ratio * prev.variance


def difference_interval(
    prev: RateEstimate,
    new: RateEstimate,
    *,
    alpha: float,
    target_n: float,
    side: Side = Side.BOTH,
) -> Interval:
    """Always-valid bound on rate_new − rate_prev."""
    estimate, variance = contrast(prev, new)
    return confidence_sequence(
        estimate, variance, units(prev, new), alpha=alpha, target_n=target_n, side=side
    )


def contrast_e_value(
    prev: RateEstimate,
    new: RateEstimate,
    *,
    ratio: float,
    alternative: Alternative,
    alpha: float,
    target_n: float,
) -> float:
    """Mixture e-value against H0: new ≥ ratio·prev (LESS) or new ≤ ratio·prev (GREATER).

    E.g. ratio = 1 − δ with LESS tests "the rate fell by more than δ". Zero variances are
    floored (module docstring); an infinite variance gives no evidence.
    """
    estimate, variance = contrast(prev, new, ratio=ratio)
    toward = -estimate if alternative is Alternative.LESS else estimate
    if math.isinf(variance) or variance <= 0:
        return 1.0
    return e_value(toward / math.sqrt(variance), units(prev, new), alpha=alpha, target_n=target_n)


def _contrast_z(q: float, prev: RateEstimate, new: RateEstimate) -> float:
    """h(q) = (new − q·prev)/sd, decreasing in q >= 0."""
    estimate, variance = contrast(prev, new, ratio=q)
    if variance > 0:
        return estimate / math.sqrt(variance)
    return math.copysign(math.inf, estimate) if estimate != 0 else 0.0


def _ratio_upper(prev: RateEstimate, new: RateEstimate, g: float) -> float:
    """sup{q >= 0 : h(q) >= −g}; infinite unless prev is clearly above 0."""
    p, vp, r, vn = prev.rate, prev.variance, new.rate, new.variance
    a = p * p - g * g * vp
    if not a > 0:
        return math.inf
    disc = max(0.0, p * p * r * r - a * (r * r - g * g * vn))
    return (p * r + math.sqrt(disc)) / a


def _ratio_lower(prev: RateEstimate, new: RateEstimate, g: float) -> float:
    """inf{q >= 0 : h(q) <= g}: 0 unless new is clearly above 0."""
    if _contrast_z(0.0, prev, new) <= g:
        return 0.0
    p, vp, r, vn = prev.rate, prev.variance, new.rate, new.variance
    if p <= 0:
        return math.inf
    # The root of (r − q·p)² = g²(vn + q²·vp) in (0, r/p), where h crosses +g.
    a = p * p - g * g * vp
    b = -2 * p * r
    c = r * r - g * g * vn
    if a == 0:
        return -c / b
    disc = max(0.0, b * b - 4 * a * c)
    roots = ((-b - math.sqrt(disc)) / (2 * a), (-b + math.sqrt(disc)) / (2 * a))
    inside = [q for q in roots if 0 <= q <= r / p]
    return min(inside) if inside else 0.0


def relative_change_interval(
    prev: RateEstimate,
    new: RateEstimate,
    *,
    alpha: float,
    target_n: float,
    side: Side = Side.BOTH,
) -> Interval:
    """Always-valid Fieller bound on new/prev − 1.

    The set of q with |h(q)| ≤ g (or the one-sided half), h(q) = L_q / sd(L_q), minus 1.
    Unbounded above when prev is not clearly above 0 (a = p² − g²·Var_prev ≤ 0).
    """
    g = boundary_multiplier(
        units(prev, new), alpha=alpha, target_n=target_n, two_sided=side is Side.BOTH
    )
    prev, new = floored(prev, new)
    if math.isinf(prev.variance) or math.isinf(new.variance) or math.isinf(g):
        return Interval(-math.inf, math.inf)
    lower = -math.inf if side is Side.UPPER else _ratio_lower(prev, new, g) - 1
    upper = math.inf if side is Side.LOWER else _ratio_upper(prev, new, g) - 1
    return Interval(lower, upper)
