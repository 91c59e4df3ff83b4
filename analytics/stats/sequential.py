"""Always-valid (anytime) confidence sequences and e-values for asymptotically normal estimates.

Why: a canary is looked at continuously; a fixed-sample interval checked at every look
inflates the error far beyond α. A confidence sequence holds at every n simultaneously,
so any look, and stopping at any look, keeps the level.

The boundary is the normal-mixture boundary of Robbins (1970), in the asymptotic form of
Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas, "Time-uniform central limit theory and
asymptotic confidence sequences", Ann. Statist. 2024 (arXiv:2103.06476), Thm 2.2. For an
estimate θ̂_n from n units with variance Var_n (so σ̂² = n·Var_n per unit), write
x = n·ρ². The two-sided (1 − α) sequence is

    θ̂_n ± σ̂ · sqrt( 2(nρ² + 1) / (n²ρ²) · log( sqrt(nρ² + 1) / α ) )
  = θ̂_n ± sqrt(Var_n) · sqrt( (x + 1)/x · log((x + 1)/α²) ),

i.e. for the sum S with intrinsic time V = nσ²: |S| ≤ sqrt((Vρ² + 1)/ρ² · log((Vρ² + 1)/α²)).
The one-sided bound uses the one-sided (half-normal) mixture of Howard, Ramdas, McAuliffe &
Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist.
2021, Prop. 6: with u = z·sqrt(x/(x + 1)) the mixture martingale is

    M(z) = 2/sqrt(1 + x) · exp(u²/2) · Φ(u),

and the bound is where M = 1/α (solved by bisection). M evaluated at the observed z is an
e-value for the one-sided null (Ville's inequality: P(sup_n M_n ≥ 1/α) ≤ α), which e-BH
can combine across problem types. ρ is tuned so the bound is tightest at n* units
(Waudby-Smith et al., eq. 14): ρ² = (−2 log α + log(1 − 2 log α)) / n*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from analytics.stats.exceptions import StatsInputError

_BISECTION_STEPS = 60
_MAX_LOG_E = 700.0


class Side(StrEnum):
    """Which side of a confidence sequence to bound."""

    LOWER = "lower"
    UPPER = "upper"
    BOTH = "both"


@dataclass(frozen=True, slots=True)
class Interval:
    """A confidence set [lower, upper]; one-sided sets have an infinite end."""

    lower: float
    upper: float

    def __contains__(self, value: float) -> bool:
        return self.lower <= value <= self.upper


def _check_level(alpha: float, target_n: float) -> None:
    if not 0 < alpha < 1:
        msg = f"alpha must lie in (0, 1), got {alpha}"
        raise StatsInputError(msg)
    if target_n <= 0:
        msg = f"target_n must be > 0, got {target_n}"
        raise StatsInputError(msg)


def mixture_rho2(*, alpha: float, target_n: float) -> float:
    """ρ² that makes the two-sided boundary tightest at ``target_n`` units."""
    _check_level(alpha, target_n)
    two_log = -2 * math.log(alpha)
    return (two_log + math.log(1 + two_log)) / target_n


def _log_phi(u: float) -> float:
    """log Φ(u), with the Mills-ratio tail where Φ underflows."""
    if u < -30:
        return -0.5 * u * u - math.log(-u) - 0.5 * math.log(2 * math.pi)
    return math.log(0.5 * math.erfc(-u / math.sqrt(2)))


def _one_sided_log_mixture(u: float, x: float) -> float:
    return math.log(2) - 0.5 * math.log1p(x) + 0.5 * u * u + _log_phi(u)


@lru_cache(maxsize=4096)
def _one_sided_u(x: float, alpha: float) -> float:
    """Solve log M(u) = log(1/α) for u >= 0; M increases in u."""
    target = -math.log(alpha)
    # Bracket: the two-sided boundary at 2α (M ≤ 1/α there) and at α (M ≥ 1/α there).
    lo = math.sqrt(max(0.0, math.log1p(x) - 2 * math.log(2 * alpha)))
    hi = math.sqrt(math.log1p(x) - 2 * math.log(alpha))
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if _one_sided_log_mixture(mid, x) < target:
            lo = mid
        else:
            hi = mid
    return hi


def boundary_multiplier(n: float, *, alpha: float, target_n: float, two_sided: bool) -> float:
    """g such that θ̂ ± g·sqrt(Var) is the always-valid (1 − α) bound after n units.

    Two-sided: g = sqrt((x + 1)/x · log((x + 1)/α²)); one-sided: g = u*·sqrt((x + 1)/x)
    with u* the root of the one-sided mixture (module docstring); x = n·ρ².
    """
    rho2 = mixture_rho2(alpha=alpha, target_n=target_n)
    if n <= 0:
        return math.inf
    x = n * rho2
    scale = math.sqrt((x + 1) / x)
    if two_sided:
        return scale * math.sqrt(math.log1p(x) - 2 * math.log(alpha))
    return scale * _one_sided_u(x, alpha)


def confidence_sequence(
    estimate: float,
    variance: float,
    n: float,
    *,
    alpha: float,
    target_n: float,
    side: Side = Side.BOTH,
) -> Interval:
    """Always-valid (1 − α) bound on θ from θ̂ = ``estimate`` with ``variance`` at n units.

    ``Side.LOWER`` gives [θ̂ − g·se, ∞), ``Side.UPPER`` (−∞, θ̂ + g·se], each one-sided at
    level α; ``Side.BOTH`` the two-sided sequence. An infinite variance gives (−∞, ∞).
    """
    if variance < 0 or math.isnan(variance):
        msg = f"variance must be >= 0, got {variance}"
        raise StatsInputError(msg)
    g = boundary_multiplier(n, alpha=alpha, target_n=target_n, two_sided=side is Side.BOTH)
    half = math.inf if math.isinf(variance) or math.isinf(g) else g * math.sqrt(variance)
    lower = -math.inf if side is Side.UPPER else estimate - half
    upper = math.inf if side is Side.LOWER else estimate + half
    return Interval(lower, upper)


def e_value(z: float, n: float, *, alpha: float, target_n: float) -> float:
    """One-sided mixture e-value against H0: θ ≤ θ0, from z = (θ̂ − θ0)/se at n units.

    E = 2/sqrt(1 + x) · exp(u²/2) · Φ(u), u = z·sqrt(x/(x + 1)), x = n·ρ² (ρ tuned with α
    and ``target_n``, as for the bounds). E ≥ 1/α exactly when the one-sided (1 − α)
    sequence excludes θ0, so the verdicts and e-BH agree. Capped at e^700.
    """
    rho2 = mixture_rho2(alpha=alpha, target_n=target_n)
    if n <= 0 or math.isnan(z):
        return 1.0
    if z == -math.inf:
        return 0.0
    x = n * rho2
    u = z * math.sqrt(x / (x + 1)) if math.isfinite(z) else math.inf
    if not math.isfinite(u):
        return math.exp(_MAX_LOG_E)
    return math.exp(min(_MAX_LOG_E, _one_sided_log_mixture(u, x)))
